/**
 * The messages of containerd.services.snapshots.v1 as @grpc/proto-loader decodes them with
 * LOADER_OPTIONS (proto field names, int64 as number, enums as names). Written by hand from
 * snapshots.proto: small, and checked against the real thing by the tests that go through containerd.
 */
export type ProtoKind = 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';

export interface ProtoTimestamp {
  seconds: number;
  nanos: number;
}

export interface ProtoMount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

export interface ProtoInfo {
  name: string;
  parent: string;
  kind: ProtoKind;
  created_at: ProtoTimestamp | null;
  updated_at: ProtoTimestamp | null;
  labels: Record<string, string>;
}

export interface PrepareRequest {
  snapshotter: string;
  key: string;
  parent: string;
  labels: Record<string, string>;
}

export interface KeyRequest {
  snapshotter: string;
  key: string;
}

export interface CommitRequest {
  snapshotter: string;
  name: string;
  key: string;
  labels: Record<string, string>;
}

export interface UpdateRequest {
  snapshotter: string;
  info: ProtoInfo | null;
  update_mask: { paths: string[] } | null;
}

export interface ListRequest {
  snapshotter: string;
  filters: string[];
}

export interface MountsResponse {
  mounts: ProtoMount[];
}

export interface InfoResponse {
  info: ProtoInfo;
}

export interface ListResponse {
  info: ProtoInfo[];
}

export interface UsageResponse {
  size: number;
  inodes: number;
}
