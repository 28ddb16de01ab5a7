# Checks of the Chef cookbook deploy/chef/shuffle_janitor without Chef (not packaged in Debian),
# run by tests/deploy.sh with Debian's Ruby:
#
#   ruby tests/chef_check.rb syntax               every .rb parses, every .erb compiles
#   ruby tests/chef_check.rb resources            the recipe, evaluated for each install method,
#                                                 declares only resources, properties and actions of
#                                                 current Chef (RESOURCES below), and every
#                                                 notification names a declared resource and an
#                                                 action of its type; metadata.rb only known fields
#   ruby tests/chef_check.rb render OUT [JSON]    templates/config.toml.erb rendered with ERB
#                                                 against attributes/default.rb, overridden by JSON
#                                                 (keys "shuffle_janitor_<attribute>", the Ansible
#                                                 role's test values), into OUT
#
# Prints what it checked; exits 1 with a message on the first failure.
require 'erb'
require 'json'

COOKBOOK = File.expand_path('../deploy/chef/shuffle_janitor', __dir__)

# Resources, their properties and actions, from Chef's documentation: the repository
# chef/chef-web-docs at commit 612f76c5f86c21d978bd2670b4f2515017f56b0f (2026-06-26),
# data/client/19/resources/<resource>.yaml (Chef Infra Client 19): syntax_full_code_block and
# properties_list, actions_list. service's actions_list there omits :reload and :restart, which
# the same page's examples use (`subscribes :reload`, `notifies :restart`) and Chef has always had.
RESOURCES = {
    'apt_package' => {
      properties: %w[anchor_package_regex default_release environment options overwrite_config_files package_name response_file response_file_variables source timeout version],
      actions: %i[install lock nothing purge reconfig remove unlock upgrade],
    },
    'dpkg_package' => {
      properties: %w[allow_downgrade environment options package_name response_file response_file_variables source timeout version],
      actions: %i[install nothing purge remove],
    },
    'archive_file' => {
      properties: %w[destination group mode options overwrite owner path strip_components],
      actions: %i[extract nothing],
    },
    'directory' => {
      properties: %w[group inherits mode owner path recursive rights],
      actions: %i[create delete nothing],
    },
    'execute' => {
      properties: %w[cgroup command creates cwd default_env domain elevated environment group input live_stream login password returns timeout user],
      actions: %i[nothing run],
    },
    'group' => {
      properties: %w[append comment excluded_members gid group_name members non_unique system],
      actions: %i[create manage modify nothing remove],
    },
    'user' => {
      properties: %w[comment expire_date force gid home inactive iterations manage_home non_unique password salt shell system uid username],
      actions: %i[create lock manage modify nothing remove unlock],
    },
    'template' => {
      properties: %w[atomic_update backup cookbook force_unlink group helper helpers inherits local manage_symlink_source mode owner path rights sensitive source variables verify],
      actions: %i[create create_if_missing delete nothing touch],
    },
    'remote_file' => {
      properties: %w[atomic_update authentication backup checksum content deny_rights force_unlink ftp_active_mode group headers http_options manage_symlink_source mode owner path remote_domain remote_password remote_user rights show_progress source ssl_verify_mode use_conditional_get use_etag use_last_modified verify],
      actions: %i[create create_if_missing delete nothing touch],
    },
    'service' => {
      properties: %w[init_command options parameters pattern priority reload_command restart_command run_levels service_name start_command status_command stop_command supports timeout user],
      actions: %i[disable enable nothing start stop],
    },
    'file' => {
      properties: %w[atomic_update backup checksum content force_unlink group inherits manage_symlink_source mode owner path rights verify],
      actions: %i[create create_if_missing delete nothing touch],
    },
    'log' => {
      properties: %w[], # filled below
      actions: %i[nothing write],
    },
}.freeze
RESOURCES['log'][:properties] = %w[level message] # resource_log_syntax.md (the yaml has no list)
RESOURCES['service'][:actions] += %i[reload restart]

# Properties every resource has: content/client/19/reusable/md/resources_common_properties.md,
# resources_common_guards_properties.md and resources_common_notification.md.
COMMON = %w[action compile_time ignore_failure retries retry_delay sensitive not_if only_if notifies subscribes].freeze

# metadata.rb fields: content/client/19/cookbooks/config_rb_metadata.md.
METADATA = %w[chef_version depends description gem issues_url license maintainer maintainer_email name ohai_version
              privacy source_url supports version].freeze

def fail!(msg)
  warn "tests/chef_check.rb: FAILED: #{msg}"
  exit 1
end

def ok(msg)
  puts "ok: #{msg}"
end

# attributes/default.rb evaluated with `default` as an auto-vivifying hash.
def default_attributes
  vivify = ->(h, k) { h[k] = Hash.new(&vivify) }
  attrs = Hash.new(&vivify)
  Object.new.tap { |o| o.define_singleton_method(:default) { attrs } }
        .instance_eval(File.read("#{COOKBOOK}/attributes/default.rb"), "#{COOKBOOK}/attributes/default.rb")
  JSON.parse(JSON.generate(attrs)) # plain hashes, no default procs
end

def render(name, vars)
  path = "#{COOKBOOK}/templates/#{name}"
  ctx = Object.new
  vars.each { |k, v| ctx.instance_variable_set("@#{k}", v) }
  # Chef renders templates with Erubis/ERB and trim mode '-'.
  ERB.new(File.read(path), trim_mode: '-').tap { |e| e.filename = path }.result(ctx.instance_eval { binding })
end

def syntax
  rb = Dir["#{COOKBOOK}/**/*.rb"].sort
  erb = Dir["#{COOKBOOK}/templates/**/*.erb"].sort
  fail!("no .rb files in #{COOKBOOK}") if rb.empty?
  rb.each do |f|
    RubyVM::InstructionSequence.compile(File.read(f), f)
  rescue SyntaxError => e
    fail!("#{f}: #{e.message}")
  end
  erb.each do |f|
    RubyVM::InstructionSequence.compile(ERB.new(File.read(f), trim_mode: '-').src, f)
  rescue SyntaxError => e
    fail!("#{f}: #{e.message}")
  end
  ok("#{rb.size} Ruby files parse and #{erb.size} ERB templates compile")
end

# Records the properties set in one resource block, refusing unknown ones. A BasicObject: a
# property such as `system` or `group` must not reach Kernel's method of that name.
class Block < BasicObject
  def fail!(msg)
    ::Kernel.warn "tests/chef_check.rb: FAILED: #{msg}"
    ::Kernel.exit 1
  end

  def initialize(type, name, recorder)
    @type = type
    @name = name
    @recorder = recorder
  end

  def method_missing(prop, *args, &blk)
    spec = ::RESOURCES.fetch(@type)
    prop = prop.to_s
    unless spec[:properties].include?(prop) || ::COMMON.include?(prop)
      fail!("#{@type}[#{@name}]: #{prop} is not a property of #{@type} (documented: #{spec[:properties].join(' ')})")
    end
    case prop
    when 'action'
      [args.first].flatten.each do |a|
        spec[:actions].include?(a) || fail!("#{@type}[#{@name}]: action #{a.inspect} is not one of #{spec[:actions]}")
      end
    when 'notifies', 'subscribes'
      @recorder.notifications << [@type, @name, prop, *args]
    when 'variables'
      @recorder.variables[[@type, @name]] = args.first
    end
    @recorder.properties[[@type, @name]] << prop
    nil
  end

end

# Evaluates the recipe: each call of a documented resource is recorded, anything else fails.
class Recorder
  attr_reader :resources, :notifications, :properties, :variables

  def initialize(node)
    @node = node
    @resources = []
    @notifications = []
    @properties = Hash.new { |h, k| h[k] = [] }
    @variables = {}
  end

  def node
    @node
  end

  def method_missing(type, *args, &blk)
    type = type.to_s
    fail!("recipe: #{type} is not a resource of current Chef (documented: #{RESOURCES.keys.join(' ')})") unless RESOURCES.key?(type)
    name = args.first.to_s
    @resources << [type, name]
    Block.new(type, name, self).instance_eval(&blk) if blk
    nil
  end

  def respond_to_missing?(*)
    true
  end
end

def evaluate(overrides)
  node = default_attributes
  node['shuffle_janitor'].merge!(overrides)
  recipe = "#{COOKBOOK}/recipes/default.rb"
  r = Recorder.new(node)
  r.instance_eval(File.read(recipe), recipe)
  r
end

def resources
  cases = {
    'apt' => { 'install_method' => 'apt', 'apt_version' => '0.1.0-1', 'allow_downgrade' => true },
    'deb' => { 'install_method' => 'deb', 'deb' => '/srv/debs/shuffle-janitor_0.1.0-1_amd64.deb', 'read_write_paths' => ['-/data1'] },
    'tarball' => { 'install_method' => 'tarball', 'tarball' => '/srv/dist/shuffle-janitor-0.1.0.linux-amd64.tar.gz' },
  }
  types = []
  cases.each do |what, overrides|
    r = evaluate(overrides)
    declared = r.resources.map { |t, n| "#{t}[#{n}]" }
    r.notifications.each do |type, name, kind, action, target, *_timing|
      fail!("#{type}[#{name}] #{kind} #{target}, which the recipe does not declare (#{what})") unless declared.include?(target)
      ttype = target[/\A[a-z_]+/]
      RESOURCES[ttype][:actions].include?(action) || fail!("#{type}[#{name}] #{kind} #{action.inspect} of #{target}: not an action of #{ttype}")
    end
    config = r.resources.find { |t, n| t == 'template' && n == '/etc/shuffle-janitor/config.toml' } ||
             fail!("no template[/etc/shuffle-janitor/config.toml] (#{what})")
    r.properties[config].include?('verify') || fail!("template[/etc/shuffle-janitor/config.toml] has no verify (#{what})")
    types |= r.resources.map(&:first)
  end
  # Each declared template's source exists, and renders with the variables the recipe gives it.
  r = evaluate(cases['tarball'].merge('read_write_paths' => ['-/data1'], 'args' => '--log-format json',
                                      'web_listen_address' => '[::1]:19339', 'web_config_file' => '/etc/shuffle-janitor/web.yml'))
  r.variables.each do |(type, name), vars|
    src = File.basename(name) == 'config.toml' ? 'config.toml.erb' : nil
    src ||= { 'shuffle-janitor' => 'default.erb', '10-exec-start.conf' => 'exec-start.conf.erb',
              '20-read-write-paths.conf' => 'read-write-paths.conf.erb' }.fetch(File.basename(name))
    File.exist?("#{COOKBOOK}/templates/#{src}") || fail!("#{type}[#{name}]: templates/#{src} missing")
    out = render(src, vars)
    want = {
      'default.erb' => "SHUFFLE_JANITOR_ARGS='--log-format json --web.listen-address=[::1]:19339 --web.config.file=/etc/shuffle-janitor/web.yml'",
      'exec-start.conf.erb' => 'ExecStart=/usr/local/bin/shuffle-janitor run --config /etc/shuffle-janitor/config.toml $SHUFFLE_JANITOR_ARGS',
      'read-write-paths.conf.erb' => 'ReadWritePaths=-/data1',
    }[src]
    fail!("templates/#{src} does not render #{want.inspect}:\n#{out}") if want && !out.lines.map(&:chomp).include?(want)
  end
  # A bad install method is refused, naming the attribute.
  begin
    evaluate('install_method' => 'rpm')
    fail!('install_method rpm was accepted')
  rescue ArgumentError => e
    e.message.include?("node['shuffle_janitor']['install_method']") || fail!("install_method rpm refused without naming it: #{e.message}")
  end
  # metadata.rb
  md = Object.new
  seen = []
  md.define_singleton_method(:method_missing) { |f, *_a| seen << f.to_s }
  md.define_singleton_method(:respond_to_missing?) { |*| true }
  md.instance_eval(File.read("#{COOKBOOK}/metadata.rb"), "#{COOKBOOK}/metadata.rb")
  unknown = seen - METADATA
  fail!("metadata.rb: #{unknown.join(', ')} not documented metadata.rb fields") unless unknown.empty?
  (%w[name version chef_version supports] - seen).empty? || fail!("metadata.rb lacks #{%w[name version chef_version supports] - seen}")
  ok("recipe (apt, deb, tarball) uses only documented resources (#{types.sort.join(' ')}), properties and actions; " \
     'notifications name declared resources; templates render; a bad install_method is refused; metadata.rb fields documented')
end

def render_config(out, json = nil)
  attrs = default_attributes['shuffle_janitor']
  if json
    JSON.parse(File.read(json)).each do |k, v|
      key = k.delete_prefix('shuffle_janitor_')
      attrs.key?(key) || fail!("#{json}: #{k} is not an attribute of the cookbook (attributes/default.rb)")
      attrs[key] = v
    end
  end
  File.write(out, render('config.toml.erb', config: attrs))
  ok("templates/config.toml.erb rendered with ERB against #{json ? "attributes/default.rb and #{json}" : 'attributes/default.rb'}")
end

case ARGV.shift
when 'syntax' then syntax
when 'resources' then resources
when 'render' then render_config(*ARGV)
else fail!('usage: ruby tests/chef_check.rb syntax|resources|render OUT [JSON]')
end
