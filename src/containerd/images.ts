/** containerd.services.images.v1: the image record (name -> target descriptor) that `ctr images ls` lists. */
import type { Descriptor } from '../remote/index.js';
import { isAlreadyExists, isNotFound, type ContainerdConnection } from './connection.js';

export interface ImageRecord {
  name: string;
  target: { media_type: string; digest: string; size: number; annotations: Record<string, string> };
  labels: Record<string, string>;
}

export class ImagesClient {
  constructor(private readonly connection: ContainerdConnection) {}

  async get(name: string): Promise<ImageRecord | undefined> {
    try {
      return (await this.connection.unary<{ image: ImageRecord }>('images', 'Get', { name }, `get image ${name}`)).image;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Creates the image, or points an existing one at `target`, as containerd's client does
   * (createNewImage: Create, on AlreadyExists Update, on NotFound (removed meanwhile) Create again).
   */
  async put(name: string, target: Descriptor, labels: Record<string, string> = {}): Promise<'created' | 'updated'> {
    const image = { name, labels, target: { media_type: target.mediaType, digest: target.digest, size: target.size, annotations: target.annotations ?? {} } };
    for (let attempt = 0; ; attempt++) {
      try {
        await this.connection.unary('images', 'Create', { image }, `create image ${name}`);
        return 'created';
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
      try {
        await this.connection.unary('images', 'Update', { image }, `update image ${name}`);
        return 'updated';
      } catch (err) {
        if (!isNotFound(err) || attempt >= 2) throw err;
      }
    }
  }
}
