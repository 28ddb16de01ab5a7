# shuffle-janitor with Puppet: the package, the config (validated by check-config before it
# replaces the old one), the service, and a reload (SIGHUP) when the config changes.
#
#   puppet apply -e 'class { "shuffle_janitor": package_source => "/var/cache/debs/shuffle-janitor_0.1.0-1_amd64.deb" }' \
#       --modulepath ... (or copy this class into a module of yours)
#
# tests/deploy.sh runs `puppet parser validate` on this file, and `puppet apply` twice on
# localhost (the second run must change nothing).
class shuffle_janitor (
  String                $package_source,
  Array[String, 1]      $roots           = ['/tmp'],
  String                $max_age         = '6h',
  String                $min_age         = '15m',
  Array[String]         $age_basis       = ['mtime', 'atime'],
  Array[String]         $kinds           = ['shuffle', 'temp'],
  Array[String]         $protect         = [],
  String                $interval        = '10m',
  String                $rescan_interval = '24h',
  Boolean               $dry_run         = false,
  Boolean               $skip_open_files = true,
  String                $state_dir       = '/var/lib/shuffle-janitor',
  Float                 $watermark_high  = 0.85,
  Float                 $watermark_low   = 0.75,
  String                $watermark_poll  = '5s',
  Boolean               $stores_reap     = true,
  String                $stores_min_idle = 'auto',
  String                $stores_executor_startup = '10m',
  String                $metrics_listen  = '0.0.0.0:19337',
  Boolean               $manage_service  = $facts['service_provider'] == 'systemd',
) {
  # TOML arrays of strings.
  $roots_toml = $roots.map |$s| { "\"${s}\"" }.join(', ')
  $age_basis_toml = $age_basis.map |$s| { "\"${s}\"" }.join(', ')
  $kinds_toml = $kinds.map |$s| { "\"${s}\"" }.join(', ')
  $protect_toml = $protect.map |$s| { "\"${s}\"" }.join(', ')

  package { 'shuffle-janitor':
    ensure   => installed,
    provider => 'dpkg',
    source   => $package_source,
  }

  file { '/etc/shuffle-janitor/config.toml':
    ensure       => file,
    owner        => 'root',
    group        => 'root',
    mode         => '0644',
    validate_cmd => '/usr/bin/shuffle-janitor check-config --config %',
    require      => Package['shuffle-janitor'],
    content      => @("TOML"),
      # Managed by Puppet (class shuffle_janitor).
      roots = [${roots_toml}]
      max_age = "${max_age}"
      min_age = "${min_age}"
      age_basis = [${age_basis_toml}]
      kinds = [${kinds_toml}]
      protect = [${protect_toml}]
      interval = "${interval}"
      rescan_interval = "${rescan_interval}"
      dry_run = ${dry_run}
      skip_open_files = ${skip_open_files}
      state_dir = "${state_dir}"

      [watermark]
      high = ${watermark_high}
      low = ${watermark_low}
      poll = "${watermark_poll}"

      [stores]
      reap = ${stores_reap}
      min_idle = "${stores_min_idle}"
      executor_startup = "${stores_executor_startup}"

      [metrics]
      listen = "${metrics_listen}"
      | TOML
  }

  if $manage_service {
    # A config change "restarts" the service with `restart`: a reload, i.e. SIGHUP.
    service { 'shuffle-janitor':
      ensure    => running,
      enable    => true,
      restart   => '/bin/systemctl reload shuffle-janitor',
      subscribe => File['/etc/shuffle-janitor/config.toml'],
    }
  } else {
    notice('shuffle-janitor: systemd is not the service provider here: service management skipped')
  }
}
