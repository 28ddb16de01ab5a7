# A Spark local dir to clean: an absolute path or shell glob, not "/" itself. check-config refuses
# more (system directories such as /etc or /usr) on the node.
type Shuffle_janitor::Root = Pattern[/\A\/[^\x00-\x1f\x7f"\\\/][^\x00-\x1f\x7f"\\]*\z/]
