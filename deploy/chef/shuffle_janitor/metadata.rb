name 'shuffle_janitor'
maintainer 'shuffle-janitor maintainers'
license 'Apache-2.0'
description 'Installs and configures shuffle-janitor, which deletes stale Apache Spark shuffle files'
version '0.1.0'
# archive_file (the tarball method) is in Chef Infra Client 15 and later.
chef_version '>= 15.0'
# The binary needs glibc 2.34 (Debian 12, Ubuntu 22.04 and later).
supports 'debian', '>= 12.0'
supports 'ubuntu', '>= 22.04'
