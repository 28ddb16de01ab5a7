# The Spark file kinds the daemon may delete (config key `kinds`).
type Shuffle_janitor::Kind = Enum['shuffle', 'temp', 'merged', 'rdd', 'broadcast', 'taskresult']
