# shuffle-janitor with Chef: a recipe (e.g. cookbooks/shuffle_janitor/recipes/default.rb) for the
# package, the config (verified by check-config before it replaces the old one), the service, and
# a reload (SIGHUP) when the config changes. Attributes under node['shuffle_janitor'].
#
# tests/deploy.sh checks its syntax with `ruby -c` (Chef itself is not packaged in Debian).

sj = {
  'deb' => '/var/cache/debs/shuffle-janitor_0.1.0-1_amd64.deb',
  'roots' => ['/tmp'],
  'max_age' => '6h',
  'min_age' => '15m',
  'age_basis' => %w(mtime atime),
  'kinds' => %w(shuffle temp),
  'protect' => [],
  'interval' => '10m',
  'rescan_interval' => '24h',
  'dry_run' => false,
  'skip_open_files' => true,
  'state_dir' => '/var/lib/shuffle-janitor',
  'watermark_high' => 0.85,
  'watermark_low' => 0.75,
  'watermark_poll' => '5s',
  'stores_reap' => true,
  'stores_min_idle' => 'auto',
  'stores_executor_startup' => '10m',
  'metrics_listen' => '0.0.0.0:19337',
}.merge(node['shuffle_janitor'] || {})

dpkg_package 'shuffle-janitor' do
  source sj['deb']
  action :install
end

# JSON strings, arrays, booleans and numbers are valid TOML values.
file '/etc/shuffle-janitor/config.toml' do
  owner 'root'
  group 'root'
  mode '0644'
  verify '/usr/bin/shuffle-janitor check-config --config %{path}'
  content <<~TOML
    # Managed by Chef (recipe shuffle_janitor).
    roots = #{sj['roots'].to_json}
    max_age = #{sj['max_age'].to_json}
    min_age = #{sj['min_age'].to_json}
    age_basis = #{sj['age_basis'].to_json}
    kinds = #{sj['kinds'].to_json}
    protect = #{sj['protect'].to_json}
    interval = #{sj['interval'].to_json}
    rescan_interval = #{sj['rescan_interval'].to_json}
    dry_run = #{sj['dry_run'].to_json}
    skip_open_files = #{sj['skip_open_files'].to_json}
    state_dir = #{sj['state_dir'].to_json}

    [watermark]
    high = #{Float(sj['watermark_high'])}
    low = #{Float(sj['watermark_low'])}
    poll = #{sj['watermark_poll'].to_json}

    [stores]
    reap = #{sj['stores_reap'].to_json}
    min_idle = #{sj['stores_min_idle'].to_json}
    executor_startup = #{sj['stores_executor_startup'].to_json}

    [metrics]
    listen = #{sj['metrics_listen'].to_json}
  TOML
  notifies :reload, 'service[shuffle-janitor]', :delayed
end

service 'shuffle-janitor' do
  supports reload: true, status: true
  action [:enable, :start]
  only_if { ::File.directory?('/run/systemd/system') }
end
