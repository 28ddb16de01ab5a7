# An address:port to serve /metrics on: an IPv4 address or a bracketed IPv6 address, and a port.
type Shuffle_janitor::Listen = Pattern[/\A(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}\z/]
