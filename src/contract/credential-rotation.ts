/**
 * How an App asks for new credentials, or for a new signing key as well: an annotation each,
 * written by hand or by `nats-tenancy rotate`, read by the controller.
 *
 * `nats-tenancy.io/rotate-credentials: TOKEN` asks it for every environment;
 * `ENV[,ENV...]=TOKEN` for those environments only. Each environment remembers the value it last
 * answered, so any new value rotates the environments it names once, and a restart or a resync
 * rotates nothing again. An environment the value does not name keeps its credentials.
 * `nats-tenancy.io/rotate-signing-key` takes the same values.
 */
export const ROTATE_ANNOTATION = "nats-tenancy.io/rotate-credentials";
/** A new scoped signing key for the account, and new credentials signed by it. */
export const ROTATE_SIGNING_KEY_ANNOTATION = "nats-tenancy.io/rotate-signing-key";

export type RotationAnnotation = typeof ROTATE_ANNOTATION | typeof ROTATE_SIGNING_KEY_ANNOTATION;

/** The rotation `environment` is asked for: the annotation's whole value, or undefined. */
export function rotationRequest(
  annotations: Record<string, string> | undefined,
  environment: string,
  annotation: RotationAnnotation = ROTATE_ANNOTATION,
): string | undefined {
  const value = annotations?.[annotation];
  if (value === undefined || value === "") return undefined;
  const equals = value.indexOf("=");
  if (equals < 0) return value;
  const named = value
    .slice(0, equals)
    .split(",")
    .map((e) => e.trim());
  return named.includes(environment) ? value : undefined;
}

/** The annotation value that asks `environments` (all of them when empty) for new credentials. */
export function rotationValue(environments: readonly string[], token: string): string {
  return environments.length > 0 ? `${environments.join(",")}=${token}` : token;
}
