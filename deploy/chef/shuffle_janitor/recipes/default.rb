#
# Cookbook:: shuffle_janitor
# Recipe:: default
#
# The package (or the tarball), the config (verified by check-config before it replaces the old
# one), extra arguments, the ReadWritePaths= drop-in, and the service: reloaded (SIGHUP) when only
# the config changed, restarted when the binary, the unit, a drop-in or the arguments changed.

sj = node['shuffle_janitor']
install_method = sj['install_method']
unless %w(apt deb tarball).include?(install_method)
  raise ArgumentError, "node['shuffle_janitor']['install_method'] must be 'apt', 'deb' or 'tarball', not #{install_method.inspect}"
end
%w(deb tarball).each do |m|
  next unless install_method == m && sj[m].to_s.empty?
  raise ArgumentError, "node['shuffle_janitor']['install_method'] '#{m}' needs node['shuffle_janitor']['#{m}'], the file's path on the node"
end

bin = install_method == 'tarball' ? '/usr/local/bin/shuffle-janitor' : '/usr/bin/shuffle-janitor'
dropins = '/etc/systemd/system/shuffle-janitor.service.d'
# Service management only where systemd runs (not in a container without it).
systemd = ::File.directory?('/run/systemd/system')

execute 'shuffle-janitor: systemctl daemon-reload' do
  command %w(systemctl daemon-reload)
  action :nothing
  only_if { systemd }
end

# Drop-ins of the unit: the tarball's ExecStart=, ReadWritePaths=.
directory dropins do
  owner 'root'
  group 'root'
  mode '0755'
end

case install_method
when 'apt'
  apt_package 'shuffle-janitor' do
    version sj['apt_version'] unless sj['apt_version'].to_s.empty?
    options '--allow-downgrades' if sj['allow_downgrade']
  end
when 'deb'
  dpkg_package 'shuffle-janitor' do
    source sj['deb']
    allow_downgrade sj['allow_downgrade']
  end
when 'tarball'
  # The tarball holds one directory, shuffle-janitor-<version>.linux-<arch>/: one directory per
  # release under /opt/shuffle-janitor, so a new version is unpacked next to the old one.
  release = "/opt/shuffle-janitor/#{::File.basename(sj['tarball'], '.tar.gz')}"

  group 'shuffle-janitor' do
    system true
  end
  user 'shuffle-janitor' do
    gid 'shuffle-janitor'
    system true
    home '/nonexistent'
    manage_home false
    shell '/usr/sbin/nologin'
  end
  directory '/opt/shuffle-janitor' do
    owner 'root'
    group 'root'
    mode '0755'
  end
  archive_file sj['tarball'] do
    destination release
    strip_components 1
    owner 'root'
    group 'root'
  end
  remote_file bin do
    source "file://#{release}/shuffle-janitor"
    owner 'root'
    group 'root'
    mode '0755'
    notifies :restart, 'service[shuffle-janitor]', :delayed
  end
  remote_file '/etc/systemd/system/shuffle-janitor.service' do
    source "file://#{release}/shuffle-janitor.service"
    owner 'root'
    group 'root'
    mode '0644'
    notifies :run, 'execute[shuffle-janitor: systemctl daemon-reload]', :immediately
    notifies :restart, 'service[shuffle-janitor]', :delayed
  end
  template "#{dropins}/10-exec-start.conf" do
    source 'exec-start.conf.erb'
    variables(bin: bin)
    owner 'root'
    group 'root'
    mode '0644'
    notifies :run, 'execute[shuffle-janitor: systemctl daemon-reload]', :immediately
    notifies :restart, 'service[shuffle-janitor]', :delayed
  end
end

directory '/etc/shuffle-janitor' do
  owner 'root'
  group 'root'
  mode '0755'
end

# A file check-config refuses fails the run and leaves the old one in place.
template '/etc/shuffle-janitor/config.toml' do
  source 'config.toml.erb'
  variables(config: sj)
  owner 'root'
  group 'root'
  mode '0644'
  verify "#{bin} check-config --config %{path}"
  notifies :reload, 'service[shuffle-janitor]', :delayed
end

# The unit passes $SHUFFLE_JANITOR_ARGS unquoted: systemd splits it on whitespace, and a quote
# would end the value in /etc/default/shuffle-janitor.
args = []
args << sj['args'] unless sj['args'].to_s.empty?
args << "--web.listen-address=#{sj['web_listen_address']}" unless sj['web_listen_address'].to_s.empty?
args << "--web.config.file=#{sj['web_config_file']}" unless sj['web_config_file'].to_s.empty?
if args.any? { |a| a =~ /['"\\]/ }
  raise ArgumentError, "node['shuffle_janitor']['args'], ['web_listen_address'] and ['web_config_file'] cannot hold quotes or backslashes: #{args.join(' ')}"
end
template '/etc/default/shuffle-janitor' do
  source 'default.erb'
  variables(args: args)
  owner 'root'
  group 'root'
  mode '0644'
  notifies :restart, 'service[shuffle-janitor]', :delayed
end

if sj['read_write_paths'].empty?
  file "#{dropins}/20-read-write-paths.conf" do
    action :delete
    notifies :run, 'execute[shuffle-janitor: systemctl daemon-reload]', :immediately
    notifies :restart, 'service[shuffle-janitor]', :delayed
  end
else
  template "#{dropins}/20-read-write-paths.conf" do
    source 'read-write-paths.conf.erb'
    variables(paths: sj['read_write_paths'])
    owner 'root'
    group 'root'
    mode '0644'
    notifies :run, 'execute[shuffle-janitor: systemctl daemon-reload]', :immediately
    notifies :restart, 'service[shuffle-janitor]', :delayed
  end
end

service 'shuffle-janitor' do
  supports status: true, restart: true, reload: true
  action sj['service_enabled'] ? [:enable, :start] : [:disable, :stop]
  only_if { systemd }
end

log 'shuffle-janitor: systemd is not running here: service management skipped' do
  level :warn
  not_if { systemd }
end
