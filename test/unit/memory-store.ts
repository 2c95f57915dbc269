/** The key store in memory, versioned like the Secrets it stands for; counts reads and writes. */
import type { SecretStore } from "../../src/accounts/key-store.ts";

export class MemoryStore implements SecretStore {
  readonly data = new Map<string, Record<string, string>>();
  private readonly versions = new Map<string, number>();
  private version = 0;
  reads = 0;
  get(name: string) {
    this.reads++;
    return Promise.resolve(this.data.get(name));
  }
  read(name: string) {
    this.reads++;
    const data = this.data.get(name);
    return Promise.resolve(data && { data, version: String(this.versions.get(name)) });
  }
  write(name: string, data: Record<string, string>, version?: string) {
    const current = this.versions.get(name);
    if (version === undefined ? current !== undefined : String(current) !== version)
      return Promise.resolve(undefined);
    this.set(name, data);
    return Promise.resolve(String(this.versions.get(name)));
  }
  writes = 0;
  /** Any write: the entry gets a new version. */
  set(name: string, data: Record<string, string>) {
    this.writes++;
    this.data.set(name, data);
    this.versions.set(name, ++this.version);
  }
  create(name: string, data: Record<string, string>) {
    if (this.data.has(name)) return Promise.resolve(false);
    this.set(name, data);
    return Promise.resolve(true);
  }
  put(name: string, data: Record<string, string>) {
    this.set(name, data);
    return Promise.resolve();
  }
  delete(name: string, version?: string) {
    if (version !== undefined && String(this.versions.get(name)) !== version)
      return Promise.resolve(false);
    this.data.delete(name);
    this.versions.delete(name);
    return Promise.resolve(true);
  }
  list() {
    return Promise.resolve([...this.data.keys()]);
  }
  async *entries() {
    await Promise.resolve();
    for (const [name, data] of this.data) yield { name, data };
  }
}
