/** core/v1 Events: what the operator tells users where `kubectl describe` shows it. */
import type { CoreV1Api } from "@kubernetes/client-node";

export interface EventInput {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

/** The object an Event is about, in its own namespace. */
export interface EventSubject {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid: string;
}

export async function recordEvent(
  api: CoreV1Api,
  component: string,
  subject: EventSubject,
  event: EventInput,
): Promise<void> {
  const now = new Date();
  await api.createNamespacedEvent({
    namespace: subject.namespace,
    body: {
      metadata: { generateName: `${subject.name}.`, namespace: subject.namespace },
      involvedObject: subject,
      ...event,
      source: { component },
      reportingComponent: component,
      reportingInstance: component,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    },
  });
}
