/**
 * A KubeConfig whose API clients send every request with an abort signal. A leader builds its
 * clients from one of these, so losing the Lease aborts the writes it has in flight instead of
 * letting them land after another replica has taken over; a request made after that is
 * refused by fetch without being sent.
 */
import type { KubeConfig, RequestContext } from "@kubernetes/client-node";

/** `beforeEach` runs before every request, and may fire `signal` to stop it. */
export function abortableKubeConfig(
  kubeConfig: KubeConfig,
  signal: AbortSignal,
  beforeEach?: () => void,
): KubeConfig {
  // makeApiClient hands `this` to each client as its authentication, which every request goes
  // through: overriding that one method on a view of the config reaches every client made from
  // it. Watches take their own signal and ignore this one; they end when their informer stops.
  // Nothing is thrown here: a watch reconnecting calls this outside any handler.
  const view = Object.create(kubeConfig) as KubeConfig;
  view.applySecurityAuthentication = async (context: RequestContext) => {
    await kubeConfig.applySecurityAuthentication(context);
    beforeEach?.();
    context.setSignal(signal);
  };
  return view;
}
