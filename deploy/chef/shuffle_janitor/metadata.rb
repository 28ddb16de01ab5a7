name 'shuffle_janitor'
maintainer 'shuffle-janitor maintainers'
license 'Apache-2.0'
description 'Installs and configures shuffle-janitor, which deletes stale Apache Spark shuffle files'
version '0.1.0'
# archive_file (the tarball method) is in Chef Infra Client 15 and later.
chef_version '>= 15.0'
# The binary is static (any libc) and needs Linux 4.11 (statx) and systemd 235 (StateDirectory=).
supports 'debian', '>= 11.0'
supports 'ubuntu', '>= 20.04'
