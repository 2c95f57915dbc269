/**
 * A KubeConfig whose API clients send every request with an abort signal. A leader builds its
 * clients from one of these, so losing the Lease aborts the writes it has in flight instead of
 * letting them land after another replica has taken over.
 */
import type { KubeConfig, RequestContext } from "@kubernetes/client-node";

export function abortableKubeConfig(kubeConfig: KubeConfig, signal: AbortSignal): KubeConfig {
  // makeApiClient hands `this` to each client as its authentication, which every request goes
  // through: overriding that one method on a view of the config reaches every client made from it.
  const view = Object.create(kubeConfig) as KubeConfig;
  view.applySecurityAuthentication = async (context: RequestContext) => {
    signal.throwIfAborted();
    await kubeConfig.applySecurityAuthentication(context);
    const own = context.getSignal();
    context.setSignal(own ? AbortSignal.any([own, signal]) : signal);
  };
  return view;
}
