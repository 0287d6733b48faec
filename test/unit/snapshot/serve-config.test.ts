import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_DAEMON_CONFIG, loadDaemonConfig, parseDaemonConfig } from '../../../src/config/config.js';
import { useSnapshotters } from './fixtures.js';

describe('daemon config', () => {
  const { makeRoot } = useSnapshotters();

  it('means defaults when the file is missing', async () => {
    expect(await loadDaemonConfig(join(await makeRoot(), 'absent.toml'))).toEqual(DEFAULT_DAEMON_CONFIG);
    expect(DEFAULT_DAEMON_CONFIG).toMatchObject({ root: '/var/lib/lazypull', logLevel: 'info', layers: { verify: true }, cache: { maxDiskBytes: 10 * 1024 ** 3 } });
    expect(DEFAULT_DAEMON_CONFIG.metricsAddress).toBeUndefined();
    expect(DEFAULT_DAEMON_CONFIG.address).toBe('/run/lazypull/lazypull.sock');
  });

  it('reads root, address and log_level from TOML', async () => {
    const file = join(await makeRoot(), 'config.toml');
    await writeFile(file, 'root = "/srv/lp"\naddress = "/run/lp/x.sock"\nlog_level = "debug"\n');
    expect(await loadDaemonConfig(file)).toMatchObject({ root: '/srv/lp', address: '/run/lp/x.sock', logLevel: 'debug' });
  });

  it('reads the tables key by key and keeps the defaults of keys not given', () => {
    const config = parseDaemonConfig(
      ['metrics_address = "127.0.0.1:9811"', '[layers]', 'verify = false', '[fetch]', 'background = false', 'prefetch_wait_sec = 3', 'prefetch_whole_layer_bytes = 0', 'small_file_read_ahead_bytes = 0', '[cache]', 'max_disk_bytes = 1073741824', '[registry]', 'hosts_dir = ""'].join('\n'),
      'c.toml',
    );
    expect(config.metricsAddress).toBe('127.0.0.1:9811');
    expect(config.layers).toEqual({ ...DEFAULT_DAEMON_CONFIG.layers, verify: false });
    expect(config.fetch).toEqual({ ...DEFAULT_DAEMON_CONFIG.fetch, background: false, prefetchWaitSec: 3, prefetchWholeLayerBytes: 0, smallFileReadAheadBytes: 0 });
    expect(DEFAULT_DAEMON_CONFIG.fetch).toMatchObject({ prefetchWholeLayerBytes: 8 << 20, smallFileReadAheadBytes: 64 << 10, prefetchWaitSec: 0 });
    expect(config.cache).toEqual({ ...DEFAULT_DAEMON_CONFIG.cache, maxDiskBytes: 1 << 30 });
    expect(config.registry.hostsDir).toBe('');
    expect(DEFAULT_DAEMON_CONFIG.fetch.background, 'parsing never changes the defaults').toBe(true);
  });

  it('rejects unknown keys, wrong values and broken TOML, naming the file and key', () => {
    expect(() => parseDaemonConfig('roots = "/x"', 'c.toml')).toThrow(/c\.toml: unknown key "roots"/);
    expect(() => parseDaemonConfig('root = "relative"', 'c.toml')).toThrow(/root must be an absolute path/);
    expect(() => parseDaemonConfig('log_level = "loud"', 'c.toml')).toThrow(/log_level must be one of debug, info, warn, error/);
    expect(() => parseDaemonConfig('root = ', 'c.toml')).toThrow(/^c\.toml: /);
    expect(() => parseDaemonConfig('[fetch]\nprefetch = "yes"', 'c.toml')).toThrow(/fetch\.prefetch must be true or false/);
    expect(() => parseDaemonConfig('[cache]\nmax_disk_bytes = -1', 'c.toml')).toThrow(/cache\.max_disk_bytes must be an integer >= 1/);
    expect(() => parseDaemonConfig('[cache]\nsize = 1', 'c.toml')).toThrow(/unknown key "cache\.size"/);
    expect(() => parseDaemonConfig('metrics_address = "9811"', 'c.toml')).toThrow(/metrics_address must be host:port/);
  });
});

describe('lazypull serve flags', () => {
  const { makeRoot } = useSnapshotters();

  it('override the config file key by key', async () => {
    const { effectiveConfig } = await import('../../../src/cli/commands/serve.js');
    const file = join(await makeRoot(), 'config.toml');
    await writeFile(file, 'root = "/srv/lp"\naddress = "/run/lp/x.sock"\nlog_level = "warn"\n');
    expect(await effectiveConfig({ config: file, address: '/tmp/flag.sock' })).toMatchObject({ root: '/srv/lp', address: '/tmp/flag.sock', logLevel: 'warn' });
    expect(await effectiveConfig({ config: file, root: '/r', logLevel: 'debug', metricsAddress: '127.0.0.1:1' })).toMatchObject({ root: '/r', address: '/run/lp/x.sock', logLevel: 'debug', metricsAddress: '127.0.0.1:1' });
  });
});
