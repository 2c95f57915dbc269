/**
 * The test node's volumes, writable by the pods' own users. kube-controller-manager's hostPath
 * provisioner (behind the node's default StorageClass) creates each volume's directory as root
 * with mode 0750, and hostPath volumes ignore a pod's fsGroup, so a pod running as non-root (the
 * chart's NATS servers) could not write its PersistentVolumeClaim. Real provisioners honour
 * fsGroup; here every provisioned directory is opened up (0777) as soon as its volume appears,
 * which is normally before the claim binds and the pod starts (a pod that starts first fails to
write and is restarted by the kubelet).
 */
import { chmodSync, existsSync } from "node:fs";
import { Watch, type KubeConfig, type V1PersistentVolume } from "@kubernetes/client-node";

export const PROVISIONED_ROOT = "/tmp/hostpath_pv";
const RETRY_MS = 1000;

export function openUpProvisionedVolumes(
  kubeConfig: KubeConfig,
  log: (line: string) => void,
): { stop: () => void } {
  let stopped = false;
  let request: { abort: () => void } | undefined;
  let timer: NodeJS.Timeout | undefined;
  const open = (volume: V1PersistentVolume): void => {
    const path = volume.spec?.hostPath?.path;
    if (!path?.startsWith(`${PROVISIONED_ROOT}/`) || !existsSync(path)) return;
    try {
      chmodSync(path, 0o777);
    } catch (error) {
      log(`could not open up volume ${path}: ${String(error)}`);
    }
  };
  const watch = (): void => {
    if (stopped) return;
    const restart = (): void => {
      if (!stopped) timer = setTimeout(watch, RETRY_MS);
    };
    new Watch(kubeConfig)
      .watch(
        "/api/v1/persistentvolumes",
        {},
        (type, volume: V1PersistentVolume) => {
          if (type === "ADDED" || type === "MODIFIED") open(volume);
        },
        // client-node ends a quiet watch after 30 s; a new one lists the volumes again.
        restart,
      )
      .then((handle) => {
        request = handle;
        if (stopped) handle.abort();
      }, restart);
  };
  watch();
  return {
    stop: () => {
      stopped = true;
      clearTimeout(timer);
      request?.abort();
    },
  };
}
