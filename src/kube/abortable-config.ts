/**
 * A KubeConfig whose API clients bound every request: a timeout, and an abort signal. A leader
 * builds its clients from one with its term's signal, so losing the Lease aborts the writes it
 * has in flight instead of letting them land after another replica has taken over; a request
 * made after that is refused by fetch without being sent.
 */
import type { KubeConfig, RequestContext } from "@kubernetes/client-node";

export interface RequestBounds {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Runs before every request, and may fire `signal` to stop it. */
  beforeEach?: () => void;
}

export function abortableKubeConfig(kubeConfig: KubeConfig, bounds: RequestBounds): KubeConfig {
  // makeApiClient hands `this` to each client as its authentication, which every request goes
  // through: overriding that one method on a view of the config reaches every client made from
  // it, and a view of a view adds its bounds to the inner ones. Watches take their own signal
  // and ignore these; they end when their informer stops. Nothing is thrown here: a watch
  // reconnecting calls this outside any handler.
  const view = Object.create(kubeConfig) as KubeConfig;
  view.applySecurityAuthentication = async (context: RequestContext) => {
    await kubeConfig.applySecurityAuthentication(context);
    bounds.beforeEach?.();
    const signals = [
      context.getSignal(),
      bounds.signal,
      bounds.timeoutMs === undefined ? undefined : AbortSignal.timeout(bounds.timeoutMs),
    ].filter((signal) => signal !== undefined);
    if (signals.length > 0) context.setSignal(AbortSignal.any(signals));
  };
  return view;
}
