import { defineConfig } from 'vitest/config';

// Integration tests start real daemons (containerd, registry) and mount FUSE: they run one file at a time
// so two suites never fight over the 2 cores or loopback ports; unit tests run in parallel.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 60_000 } },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          pool: 'forks',
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
