# @summary /etc/shuffle-janitor/config.toml (checked by check-config before it replaces the old
#   one), /etc/default/shuffle-janitor (extra arguments), the ReadWritePaths= drop-in and a state
#   directory of its own.
#
# @api private
class shuffle_janitor::config {

  file { '/etc/shuffle-janitor':
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0755',
  }
  # A file check-config refuses fails this resource and leaves the old one in place.
  file { '/etc/shuffle-janitor/config.toml':
    ensure       => file,
    owner        => 'root',
    group        => 'root',
    mode         => '0644',
    validate_cmd => "${shuffle_janitor::bin} check-config --config %",
    content      => epp('shuffle_janitor/config.toml.epp'),
  }
  file { '/etc/default/shuffle-janitor':
    ensure  => file,
    owner   => 'root',
    group   => 'root',
    mode    => '0644',
    content => epp('shuffle_janitor/default.epp', { 'args' => $shuffle_janitor::args }),
  }
  $rw = $shuffle_janitor::all_read_write_paths
  file { '/etc/systemd/system/shuffle-janitor.service.d/20-read-write-paths.conf':
    ensure  => if $rw.empty { 'absent' } else { 'file' },
    owner   => 'root',
    group   => 'root',
    mode    => '0644',
    content => epp('shuffle_janitor/read-write-paths.conf.epp', { 'paths' => $rw }),
  }
  if $shuffle_janitor::own_state_dir {
    file { $shuffle_janitor::state_dir:
      ensure => directory,
      owner  => 'shuffle-janitor',
      group  => 'shuffle-janitor',
      mode   => '0700',
    }
  }
}
