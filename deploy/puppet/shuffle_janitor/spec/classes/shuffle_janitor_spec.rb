require 'spec_helper'

CONFIG = '/etc/shuffle-janitor/config.toml'.freeze
DEFAULTS = '/etc/default/shuffle-janitor'.freeze
RW = '/etc/systemd/system/shuffle-janitor.service.d/20-read-write-paths.conf'.freeze

describe 'shuffle_janitor' do
  context 'with defaults (apt)' do
    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_package('shuffle-janitor').with(ensure: 'installed', provider: nil, source: nil) }
    it {
      is_expected.to contain_file(CONFIG).with(
        validate_cmd: '/usr/bin/shuffle-janitor check-config --config %', owner: 'root', mode: '0644',
      ).that_requires('Class[shuffle_janitor::install]')
    }
    it 'writes every key with the daemon\'s defaults' do
      content = catalogue.resource('file', CONFIG)[:content]
      expected = <<~TOML
        roots = ["/tmp"]
        max_age = "6h"
        min_age = "15m"
        age_basis = ["mtime", "atime"]
        kinds = ["shuffle", "temp"]
        protect = []
        interval = "10m"
        rescan_interval = "24h"
        dry_run = false
        skip_open_files = true
        state_dir = "/var/lib/shuffle-janitor"

        [watermark]
        high = 0.85
        low = 0.75
        poll = "5s"

        [stores]
        reap = true
        min_idle = "auto"
        executor_startup = "10m"

        [metrics]
        listen = "0.0.0.0:19337"
      TOML
      expect(content.lines.reject { |l| l.start_with?('#') }.join.strip).to eq(expected.strip)
    end
    it { is_expected.to contain_file(DEFAULTS).with_content(/^#SHUFFLE_JANITOR_ARGS=/).without_content(/^SHUFFLE_JANITOR_ARGS=/) }
    it { is_expected.to contain_file(RW).with_ensure('absent') }
    it { is_expected.to contain_service('shuffle-janitor').with(ensure: true, enable: true) }
    it { is_expected.to contain_service('shuffle-janitor').that_subscribes_to(['Package[shuffle-janitor]', "File[#{DEFAULTS}]", "File[#{RW}]"]) }
    # A config change reloads (SIGHUP), it does not restart.
    it { is_expected.to contain_exec('reload shuffle-janitor').with(refreshonly: true).that_subscribes_to("File[#{CONFIG}]") }
    it { is_expected.not_to contain_service('shuffle-janitor').that_subscribes_to("File[#{CONFIG}]") }
    it { is_expected.not_to contain_user('shuffle-janitor') }
  end

  context 'where systemd is not the service provider' do
    let(:facts) { { 'service_provider' => 'sysv' } }

    it { is_expected.to compile.with_all_deps }
    it { is_expected.not_to contain_service('shuffle-janitor') }
    it { is_expected.not_to contain_exec('reload shuffle-janitor') }
  end

  context 'with every parameter away from its default (deb)' do
    let(:params) do
      {
        install_method: 'deb', package_ensure: 'latest', package_file: '/srv/debs/shuffle-janitor_0.1.0-1_amd64.deb',
        roots: ['/tmp', '/data*/spark'], max_age: '4h', min_age: '20m', age_basis: ['mtime'],
        kinds: ['shuffle', 'temp', 'broadcast'], protect: ['/tmp/keep/**'], interval: '5m', rescan_interval: '12h',
        dry_run: true, skip_open_files: false, state_dir: '/var/tmp/shuffle-janitor-state',
        watermark_high: 0.9, watermark_low: 0.8, watermark_poll: '10s', stores_reap: false,
        stores_min_idle: '20h', stores_executor_startup: '5m', metrics_listen: '127.0.0.1:19338',
        web_listen_address: '[::1]:19339', web_config_file: '/etc/shuffle-janitor/web.yml',
        extra_args: ['--log-format', 'json'], read_write_paths: ['-/data1', '-/data2'],
        manage_service: true, service_enable: false
      }
    end

    it { is_expected.to compile.with_all_deps }
    it {
      is_expected.to contain_package('shuffle-janitor').with(
        ensure: 'latest', provider: 'dpkg', source: '/srv/debs/shuffle-janitor_0.1.0-1_amd64.deb',
      )
    }
    it 'writes every key from its parameter' do
      content = catalogue.resource('file', CONFIG)[:content]
      [
        'roots = ["/tmp", "/data*/spark"]', 'max_age = "4h"', 'min_age = "20m"', 'age_basis = ["mtime"]',
        'kinds = ["shuffle", "temp", "broadcast"]', 'protect = ["/tmp/keep/**"]', 'interval = "5m"',
        'rescan_interval = "12h"', 'dry_run = true', 'skip_open_files = false',
        'state_dir = "/var/tmp/shuffle-janitor-state"', 'high = 0.9', 'low = 0.8', 'poll = "10s"',
        'reap = false', 'min_idle = "20h"', 'executor_startup = "5m"', 'listen = "127.0.0.1:19338"'
      ].each { |line| expect(content.lines.map(&:chomp)).to include(line) }
    end
    it {
      is_expected.to contain_file(DEFAULTS).with_content(
        %r{^SHUFFLE_JANITOR_ARGS="--log-format json --web.listen-address=\[::1\]:19339 --web.config.file=/etc/shuffle-janitor/web.yml"$},
      )
    }
    # The state_dir is not the unit's StateDirectory=: made here, and writable to the service.
    it { is_expected.to contain_file(RW).with(ensure: 'file', content: %r{^ReadWritePaths=-/data1 -/data2 /var/tmp/shuffle-janitor-state$}) }
    it { is_expected.to contain_file('/var/tmp/shuffle-janitor-state').with(ensure: 'directory', owner: 'shuffle-janitor', mode: '0700') }
    it { is_expected.to contain_service('shuffle-janitor').with(ensure: false, enable: false) }
    it { is_expected.not_to contain_exec('reload shuffle-janitor') }
  end

  # TOML reads "1" as an integer, which the daemon refuses for a watermark.
  context 'with watermark_high 1.0' do
    let(:params) { { watermark_high: 1.0 } }

    it { is_expected.to contain_file(CONFIG).with_content(%r{^high = 1\.0$}) }
  end

  context 'from apt, a pinned version' do
    let(:params) { { package_ensure: '0.1.0-1' } }

    it { is_expected.to contain_package('shuffle-janitor').with(ensure: '0.1.0-1', provider: nil) }
  end

  context 'from the release tarball' do
    let(:params) { { install_method: 'tarball', tarball: '/srv/dist/shuffle-janitor-0.1.0.linux-amd64.tar.gz' } }
    let(:dir) { '/opt/shuffle-janitor/shuffle-janitor-0.1.0.linux-amd64' }

    it { is_expected.to compile.with_all_deps }
    it { is_expected.not_to contain_package('shuffle-janitor') }
    it { is_expected.to contain_user('shuffle-janitor').with(system: true, gid: 'shuffle-janitor', shell: '/usr/sbin/nologin') }
    it { is_expected.to contain_exec('unpack /srv/dist/shuffle-janitor-0.1.0.linux-amd64.tar.gz').with(creates: "#{dir}/shuffle-janitor") }
    it { is_expected.to contain_file('/usr/local/bin/shuffle-janitor').with(source: "#{dir}/shuffle-janitor", mode: '0755') }
    it { is_expected.to contain_file('/etc/systemd/system/shuffle-janitor.service').with(source: "#{dir}/shuffle-janitor.service") }
    it {
      is_expected.to contain_file('/etc/systemd/system/shuffle-janitor.service.d/10-exec-start.conf').with_content(
        %r{^ExecStart=/usr/local/bin/shuffle-janitor run --config /etc/shuffle-janitor/config.toml \$SHUFFLE_JANITOR_ARGS$},
      )
    }
    it { is_expected.to contain_file(CONFIG).with(validate_cmd: '/usr/local/bin/shuffle-janitor check-config --config %') }
    it { is_expected.to contain_service('shuffle-janitor').that_subscribes_to('File[/usr/local/bin/shuffle-janitor]') }
  end

  # Each bad value is refused when the catalog compiles, naming the parameter.
  {
    'a duration without a unit' => [{ max_age: '6' }, %r{max_age}],
    'a duration with a typo' => [{ interval: '10 minuts' }, %r{interval}],
    'an unknown kind' => [{ kinds: ['shuffle', 'shufle'] }, %r{kinds}],
    'no kind at all' => [{ kinds: [] }, %r{kinds}],
    'an unknown age basis' => [{ age_basis: ['birthtime'] }, %r{age_basis}],
    'a relative root' => [{ roots: ['data/spark'] }, %r{roots}],
    'the root "/"' => [{ roots: ['/'] }, %r{roots}],
    'no root' => [{ roots: [] }, %r{roots}],
    'a root with a double quote' => [{ roots: ['/tmp/"x'] }, %r{roots}],
    'a relative protect glob' => [{ protect: ['keep/**'] }, %r{protect}],
    'a watermark above 1' => [{ watermark_high: 1.5 }, %r{watermark_high}],
    'a watermark of 0' => [{ watermark_low: 0.0 }, %r{watermark_low}],
    'a watermark as a string' => [{ watermark_high: '0.9' }, %r{watermark_high}],
    'low not below high' => [{ watermark_high: 0.8, watermark_low: 0.8 }, %r{watermark_low \(0\.8\) must be below watermark_high}],
    'a listen address without a port' => [{ metrics_listen: '0.0.0.0' }, %r{metrics_listen}],
    'a relative state_dir' => [{ state_dir: 'state' }, %r{state_dir}],
    'min_idle neither auto nor a duration' => [{ stores_min_idle: 'never' }, %r{stores_min_idle}],
    'an unknown install method' => [{ install_method: 'rpm' }, %r{install_method}],
    'deb without its file' => [{ install_method: 'deb' }, %r{install_method deb needs package_file}],
    'deb with a version' => [{ install_method: 'deb', package_file: '/x.deb', package_ensure: '0.1.0-1' }, %r{package_ensure must be installed or latest}],
    'a version that is not one' => [{ package_ensure: 'newest' }, %r{package_ensure}],
    'tarball without its file' => [{ install_method: 'tarball' }, %r{install_method tarball needs tarball}],
    'an argument with a space' => [{ extra_args: ['--log-format json'] }, %r{extra_args}],
    'a relative web_config_file' => [{ web_config_file: 'web.yml' }, %r{web_config_file}],
    'a ReadWritePaths entry with a space' => [{ read_write_paths: ['/data 1'] }, %r{read_write_paths}],
  }.each do |what, (params, message)|
    context "with #{what}" do
      let(:params) { params }

      it { is_expected.to compile.and_raise_error(message) }
    end
  end
end
