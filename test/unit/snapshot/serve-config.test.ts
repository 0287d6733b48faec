import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_DAEMON_CONFIG, loadDaemonConfig, parseDaemonConfig } from '../../../src/config/config.js';
import { useSnapshotters } from './fixtures.js';

describe('daemon config', () => {
  const { makeRoot } = useSnapshotters();

  it('means defaults when the file is missing', async () => {
    expect(await loadDaemonConfig(join(await makeRoot(), 'absent.toml'))).toEqual({ root: '/var/lib/lazypull', address: '/run/lazypull/lazypull.sock', logLevel: 'info' });
    expect(DEFAULT_DAEMON_CONFIG.address).toBe('/run/lazypull/lazypull.sock');
  });

  it('reads root, address and log_level from TOML', async () => {
    const file = join(await makeRoot(), 'config.toml');
    await writeFile(file, 'root = "/srv/lp"\naddress = "/run/lp/x.sock"\nlog_level = "debug"\n');
    expect(await loadDaemonConfig(file)).toEqual({ root: '/srv/lp', address: '/run/lp/x.sock', logLevel: 'debug' });
  });

  it('rejects unknown keys, wrong values and broken TOML, naming the file and key', () => {
    expect(() => parseDaemonConfig('roots = "/x"', 'c.toml')).toThrow(/c\.toml: unknown key "roots"/);
    expect(() => parseDaemonConfig('root = "relative"', 'c.toml')).toThrow(/root must be an absolute path/);
    expect(() => parseDaemonConfig('log_level = "loud"', 'c.toml')).toThrow(/log_level must be one of debug, info, warn, error/);
    expect(() => parseDaemonConfig('root = ', 'c.toml')).toThrow(/^c\.toml: /);
  });
});

describe('lazypull serve flags', () => {
  const { makeRoot } = useSnapshotters();

  it('override the config file key by key', async () => {
    const { effectiveConfig } = await import('../../../src/cli/commands/serve.js');
    const file = join(await makeRoot(), 'config.toml');
    await writeFile(file, 'root = "/srv/lp"\naddress = "/run/lp/x.sock"\nlog_level = "warn"\n');
    expect(await effectiveConfig({ config: file, address: '/tmp/flag.sock' })).toEqual({ root: '/srv/lp', address: '/tmp/flag.sock', logLevel: 'warn' });
    expect(await effectiveConfig({ config: file, root: '/r', logLevel: 'debug' })).toEqual({ root: '/r', address: '/run/lp/x.sock', logLevel: 'debug' });
  });
});
