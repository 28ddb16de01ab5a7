require "tmpdir"
# rspec-puppet (Debian's ruby-rspec-puppet), run by tests/deploy.sh:
#   cd deploy/puppet/shuffle_janitor && rspec spec
# The module is its own directory; its parent is the module path, so no fixtures are needed (the
# module depends on nothing).
require 'rspec-puppet'

RSpec.configure do |c|
  c.module_path = File.expand_path('../..', __dir__)
  # No spec/fixtures: the module path above already holds the module.
  c.setup_fixtures = false
  c.manifest = File.join(Dir.mktmpdir('shuffle_janitor-spec'), 'site.pp').tap { |f| File.write(f, '') }
  c.strict_variables = true
  c.default_facts = {
    'os' => { 'family' => 'Debian', 'name' => 'Debian', 'release' => { 'major' => '12', 'full' => '12.8' } },
    'osfamily' => 'Debian',
    'operatingsystem' => 'Debian',
    'kernel' => 'Linux',
    'service_provider' => 'systemd',
    'path' => '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  }
end
