/**
 * Where lazypull and its neighbours live by default. A module of its own, with no imports, so that a
 * command as small as `lazypull rpull` talking to the daemon can name them without loading the config
 * parser, gRPC or the registry client.
 */

/** The daemon's TOML config file. */
export const DEFAULT_CONFIG_PATH = '/etc/lazypull/config.toml';
/** The daemon's gRPC socket: containerd's proxy_plugins entry, `lazypull status` and `lazypull rpull` use it. */
export const DEFAULT_DAEMON_ADDRESS = '/run/lazypull/lazypull.sock';
/** containerd's own gRPC socket. */
export const DEFAULT_CONTAINERD_ADDRESS = '/run/containerd/containerd.sock';
/** containerd's hosts.toml tree (mirrors, CAs, plain HTTP). */
export const DEFAULT_HOSTS_DIR = '/etc/containerd/certs.d';
