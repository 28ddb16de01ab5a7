# @summary The service: enabled and running; restarted when the binary, the unit, its drop-ins or
#   the extra arguments change, reloaded (SIGHUP, the daemon re-reads its config) when only the
#   config changes.
#
# @api private
class shuffle_janitor::service {

  if $shuffle_janitor::manage_service {
    # The systemd provider runs daemon-reload itself when a unit file changed.
    $installed = $shuffle_janitor::install_method ? {
      'tarball' => [
        File[$shuffle_janitor::bin],
        File['/etc/systemd/system/shuffle-janitor.service'],
        File['/etc/systemd/system/shuffle-janitor.service.d/10-exec-start.conf'],
      ],
      default   => [Package['shuffle-janitor']],
    }
    service { 'shuffle-janitor':
      ensure    => $shuffle_janitor::service_enable,
      enable    => $shuffle_janitor::service_enable,
      subscribe => $installed + [
        File['/etc/default/shuffle-janitor'],
        File['/etc/systemd/system/shuffle-janitor.service.d/20-read-write-paths.conf'],
      ],
    }
    if $shuffle_janitor::service_enable {
      # Only the config changed: a reload keeps the daemon's index and watches (a restart would
      # walk every root again). Subscribed to the config alone, not to the class.
      exec { 'reload shuffle-janitor':
        command     => ['/bin/systemctl', 'reload', 'shuffle-janitor.service'],
        refreshonly => true,
        subscribe   => File['/etc/shuffle-janitor/config.toml'],
        require     => Service['shuffle-janitor'],
      }
    }
  } else {
    notice('shuffle-janitor: systemd is not the service provider here: service management skipped')
  }
}
