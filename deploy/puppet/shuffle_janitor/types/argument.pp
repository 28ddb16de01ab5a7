# One extra argument of `shuffle-janitor run`. The unit passes $SHUFFLE_JANITOR_ARGS unquoted, so
# systemd splits it on whitespace: an argument cannot hold whitespace or quotes.
type Shuffle_janitor::Argument = Pattern[/\A[^\s'"\\]+\z/]
