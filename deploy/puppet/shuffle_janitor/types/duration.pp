# A duration as the daemon parses it (humantime): one or more "<number><unit>" parts, e.g. "90s",
# "15m", "6h", "1day 2h". Caught here, at catalog compile time, rather than by check-config on
# the node after the catalog was shipped. The units are humantime's; a regex cannot be split
# across lines.
# lint:ignore:140chars
type Shuffle_janitor::Duration = Pattern[/\A\d+ ?(nsec|ns|usec|us|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)( *\d+ ?(nsec|ns|usec|us|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y))*\z/]
# lint:endignore
