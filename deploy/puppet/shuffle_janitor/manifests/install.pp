# @summary The binary and the unit: the Debian package, or the release tarball.
#
# @api private
class shuffle_janitor::install {
  $method = $shuffle_janitor::install_method

  if $method == 'tarball' {
    # The tarball holds one directory, shuffle-janitor-<version>.linux-<arch>/.
    $dir = "/opt/shuffle-janitor/${shuffle_janitor::tarball.regsubst(/\A.*\/|\.tar\.gz\z/, '', 'G')}"

    group { 'shuffle-janitor':
      ensure => present,
      system => true,
    }
    user { 'shuffle-janitor':
      ensure     => present,
      system     => true,
      gid        => 'shuffle-janitor',
      home       => '/nonexistent',
      managehome => false,
      shell      => '/usr/sbin/nologin',
      password   => '!',
    }
    file { '/opt/shuffle-janitor':
      ensure => directory,
      owner  => 'root',
      group  => 'root',
      mode   => '0755',
    }
    exec { "unpack ${shuffle_janitor::tarball}":
      command => ['/bin/tar', '-xzf', $shuffle_janitor::tarball, '-C', '/opt/shuffle-janitor', '--no-same-owner'],
      creates => "${dir}/shuffle-janitor",
      require => File['/opt/shuffle-janitor'],
    }
    file { $shuffle_janitor::bin:
      ensure  => file,
      source  => "${dir}/shuffle-janitor",
      owner   => 'root',
      group   => 'root',
      mode    => '0755',
      require => Exec["unpack ${shuffle_janitor::tarball}"],
    }
    file { '/etc/systemd/system/shuffle-janitor.service':
      ensure  => file,
      source  => "${dir}/shuffle-janitor.service",
      owner   => 'root',
      group   => 'root',
      mode    => '0644',
      require => Exec["unpack ${shuffle_janitor::tarball}"],
    }
    file { '/etc/systemd/system/shuffle-janitor.service.d/10-exec-start.conf':
      ensure  => file,
      owner   => 'root',
      group   => 'root',
      mode    => '0644',
      content => epp('shuffle_janitor/exec-start.conf.epp', { 'bin' => $shuffle_janitor::bin }),
    }
  } else {
    $source = $method ? {
      'deb'   => { 'provider' => 'dpkg', 'source' => $shuffle_janitor::package_file },
      default => {},
    }
    package { 'shuffle-janitor':
      ensure => $shuffle_janitor::package_ensure,
      *      => $source,
    }
  }

  # Drop-ins of the unit: the tarball's ExecStart=, ReadWritePaths=.
  file { '/etc/systemd/system/shuffle-janitor.service.d':
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0755',
  }
}
