# @summary Installs shuffle-janitor, which deletes stale Apache Spark shuffle files, and manages
#   its config and service.
#
# The config (/etc/shuffle-janitor/config.toml) has one parameter per key; it is checked by
# `shuffle-janitor check-config` before it replaces the old one, and a change reloads the
# service (SIGHUP). Extra arguments, the ReadWritePaths= drop-in and a new binary restart it.
# Every key is documented in the project's config/shuffle-janitor.toml and
# `man 5 shuffle-janitor.toml`.
#
# @example From an apt repository the node already has
#   class { 'shuffle_janitor':
#     roots => ['/tmp', '/data*/spark'],
#   }
#
# @param install_method
#   apt: the package from the node's apt repositories; deb: the package file `package_file`;
#   tarball: the release tarball `tarball` (binary in /usr/local/bin, unit in
#   /etc/systemd/system, user and group created).
# @param package_ensure
#   The package's ensure (apt and deb): installed, latest, or a version such as '0.1.0-1'.
# @param package_file
#   Path on the node of the .deb (install_method deb).
# @param tarball
#   Path on the node of shuffle-janitor-<version>.linux-<arch>.tar.gz (install_method tarball).
# @param roots
#   Spark local dirs to clean: absolute paths or globs.
# @param max_age
#   A map output unused for longer than this is deleted.
# @param min_age
#   Nothing used more recently than this is ever deleted; not longer than max_age.
# @param age_basis
#   Which timestamps make a file's last use.
# @param kinds
#   Which Spark file kinds may be deleted.
# @param protect
#   Absolute path globs never deleted.
# @param interval
#   How often the daemon sweeps.
# @param rescan_interval
#   How often the daemon walks every root anyway (at least 1m).
# @param dry_run
#   Decide and report, delete nothing.
# @param skip_open_files
#   Keep map outputs a process holds open or mapped.
# @param state_dir
#   Where the daemon keeps the opens it saw across restarts; '' keeps nothing. Another directory
#   than /var/lib/shuffle-janitor (the unit's StateDirectory=) is created here and made writable
#   to the service by the ReadWritePaths= drop-in.
# @param watermark_high
#   Fraction of a filesystem in use at or above which the least recently used units go.
# @param watermark_low
#   Fraction down to which they go; below watermark_high.
# @param watermark_poll
#   How often the daemon checks usage.
# @param stores_reap
#   Remove the empty block stores of executors that are gone.
# @param stores_min_idle
#   How long an empty store must have been quiet: a duration or 'auto'.
# @param stores_executor_startup
#   The longest an executor takes to create its block store (at least 1m).
# @param metrics_listen
#   Address:port of /metrics, /-/healthy and /-/ready (config key metrics.listen).
# @param web_listen_address
#   If set, passed as `--web.listen-address=<value>` on the command line.
# @param web_config_file
#   If set, passed as `--web.config.file=<path>`: the exporter toolkit's web configuration (TLS,
#   basic auth) for the metrics endpoint. The file itself is yours to manage.
# @param extra_args
#   More arguments of `shuffle-janitor run`, e.g. ['--log-format', 'json'] (in
#   /etc/default/shuffle-janitor; a change restarts the service).
# @param read_write_paths
#   Top directories of roots outside the unit's ReadWritePaths= (/tmp, /data, /var/data, /mnt,
#   /hadoop, /grid), e.g. ['-/data1']: "-" skips a missing one.
# @param manage_service
#   Enable, start, reload and restart the service. Defaults to true where systemd is the
#   service provider.
# @param service_enable
#   With manage_service: true runs the service, false stops and disables it.
class shuffle_janitor (
  Enum['apt', 'deb', 'tarball']                  $install_method          = 'apt',
  Variant[Enum['installed', 'latest'], Pattern[/\A\d[0-9A-Za-z.+~:-]*\z/]] $package_ensure = 'installed',
  Optional[Shuffle_janitor::Absolutepath]        $package_file            = undef,
  Optional[Shuffle_janitor::Absolutepath]        $tarball                 = undef,
  Array[Shuffle_janitor::Root, 1]                $roots                   = ['/tmp'],
  Shuffle_janitor::Duration                      $max_age                 = '6h',
  Shuffle_janitor::Duration                      $min_age                 = '15m',
  Array[Shuffle_janitor::Agebasis, 1]            $age_basis               = ['mtime', 'atime'],
  Array[Shuffle_janitor::Kind, 1]                $kinds                   = ['shuffle', 'temp'],
  Array[Shuffle_janitor::Absolutepath]           $protect                 = [],
  Shuffle_janitor::Duration                      $interval                = '10m',
  Shuffle_janitor::Duration                      $rescan_interval         = '24h',
  Boolean                                        $dry_run                 = false,
  Boolean                                        $skip_open_files         = true,
  Variant[Enum[''], Shuffle_janitor::Absolutepath] $state_dir             = '/var/lib/shuffle-janitor',
  Shuffle_janitor::Fraction                      $watermark_high          = 0.85,
  Shuffle_janitor::Fraction                      $watermark_low           = 0.75,
  Shuffle_janitor::Duration                      $watermark_poll          = '5s',
  Boolean                                        $stores_reap             = true,
  Variant[Enum['auto'], Shuffle_janitor::Duration] $stores_min_idle       = 'auto',
  Shuffle_janitor::Duration                      $stores_executor_startup = '10m',
  Shuffle_janitor::Listen                        $metrics_listen          = '0.0.0.0:19337',
  Optional[Shuffle_janitor::Listen]              $web_listen_address      = undef,
  Optional[Shuffle_janitor::Absolutepath]        $web_config_file         = undef,
  Array[Shuffle_janitor::Argument]               $extra_args              = [],
  Array[Shuffle_janitor::Readwritepath]          $read_write_paths        = [],
  Boolean                                        $manage_service          = $facts['service_provider'] == 'systemd',
  Boolean                                        $service_enable          = true,
) {
  # What the types cannot say alone, refused at compile time with the parameter named.
  if $install_method == 'deb' and $package_file =~ Undef {
    fail('shuffle_janitor: install_method deb needs package_file, the path of the .deb on the node')
  }
  if $install_method == 'deb' and !($package_ensure in ['installed', 'latest']) {
    fail(@("MSG"/L))
      shuffle_janitor: with install_method deb, package_ensure must be installed or latest \
      (the version is the file's), not ${package_ensure}
      | MSG
  }
  if $install_method == 'tarball' and $tarball =~ Undef {
    fail('shuffle_janitor: install_method tarball needs tarball, the path of the release tarball on the node')
  }
  if $watermark_low >= $watermark_high {
    fail("shuffle_janitor: watermark_low (${watermark_low}) must be below watermark_high (${watermark_high})")
  }

  $bin = $install_method ? {
    'tarball' => '/usr/local/bin/shuffle-janitor',
    default   => '/usr/bin/shuffle-janitor',
  }
  # The unit's StateDirectory= makes /var/lib/shuffle-janitor; another state_dir is made here.
  $own_state_dir = !($state_dir in ['', '/var/lib/shuffle-janitor'])
  $all_read_write_paths = $read_write_paths + ($own_state_dir ? {
      true  => [$state_dir],
      false => [],
  })
  $args = $extra_args + ($web_listen_address ? {
      undef   => [],
      default => ["--web.listen-address=${web_listen_address}"],
    }) + ($web_config_file ? {
      undef   => [],
      default => ["--web.config.file=${web_config_file}"],
  })

  contain shuffle_janitor::install
  contain shuffle_janitor::config
  contain shuffle_janitor::service

  # Ordering only: service.pp subscribes to the resources that need a restart, and the config
  # alone to a reload.
  Class['shuffle_janitor::install']
  -> Class['shuffle_janitor::config']
  -> Class['shuffle_janitor::service']
}
