/** core/v1 Events: what the operator tells users where `kubectl describe` shows it. */
import type { CoreV1Event } from "@kubernetes/client-node";
import { statusOf } from "./api-errors.ts";
import {
  MERGE_PATCH_TYPE,
  corePath,
  type JsonRequest,
  type JsonRequests,
} from "./json-requests.ts";

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

function eventCreation(event: CoreV1Event): JsonRequest {
  return { method: "POST", path: corePath("events", event.metadata.namespace ?? ""), body: event };
}

function eventBody(
  component: string,
  subject: EventSubject,
  event: EventInput,
  occurrences: { count: number; firstTimestamp: Date; lastTimestamp: Date },
): CoreV1Event {
  return {
    metadata: { generateName: `${subject.name}.`, namespace: subject.namespace },
    involvedObject: subject,
    ...event,
    source: { component },
    reportingComponent: component,
    reportingInstance: component,
    ...occurrences,
  };
}

export async function recordEvent(
  requests: JsonRequests,
  component: string,
  subject: EventSubject,
  event: EventInput,
): Promise<void> {
  const now = new Date();
  await requests.send(
    eventCreation(
      eventBody(component, subject, event, { count: 1, firstTimestamp: now, lastTimestamp: now }),
    ),
  );
}

export interface EventSeriesOptions {
  /** A repeat later than this after the last one starts a new Event. 10 minutes. */
  windowMs?: number;
  /** Series remembered at most (the oldest are forgotten). 1000. */
  maxSeries?: number;
  now?: () => number;
}

interface Series {
  subject: EventSubject;
  event: EventInput;
  /** The Event written for the series, once created. */
  name?: string;
  count: number;
  written: number;
  firstTimestamp: Date;
  lastMs: number;
  writing: Promise<void>;
}

/**
 * Events that repeat (the same reason and message about the same object) as one Event whose
 * count and lastTimestamp grow, the way the kubelet's recorder aggregates: a Deployment whose
 * pods are refused retries every few seconds and would otherwise bury its other events. The
 * series live in this process, so each replica keeps its own.
 */
export class EventSeries {
  private readonly requests: JsonRequests;
  private readonly component: string;
  private readonly windowMs: number;
  private readonly maxSeries: number;
  private readonly now: () => number;
  private readonly series = new Map<string, Series>();

  constructor(requests: JsonRequests, component: string, options: EventSeriesOptions = {}) {
    this.requests = requests;
    this.component = component;
    this.windowMs = options.windowMs ?? 600_000;
    this.maxSeries = options.maxSeries ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /** Resolves once the Event holds this occurrence (or a later one of the same series). */
  record(subject: EventSubject, event: EventInput): Promise<void> {
    const key = [subject.uid, event.type, event.reason, event.message].join("\0");
    const nowMs = this.now();
    let series = this.series.get(key);
    if (!series || nowMs - series.lastMs > this.windowMs) {
      series = {
        subject,
        event,
        count: 0,
        written: 0,
        firstTimestamp: new Date(nowMs),
        lastMs: nowMs,
        writing: Promise.resolve(),
      };
    }
    // Most recently used last, so the first key is the one to forget.
    this.series.delete(key);
    this.series.set(key, series);
    for (const oldest of this.series.keys()) {
      if (this.series.size <= this.maxSeries) break;
      this.series.delete(oldest);
    }
    series.count += 1;
    series.lastMs = nowMs;
    const current = series;
    // One write at a time per series; a write finds the count all occurrences so far made.
    series.writing = series.writing.catch(() => undefined).then(() => this.write(current));
    return series.writing;
  }

  private async write(series: Series): Promise<void> {
    if (series.written === series.count) return;
    const count = series.count;
    const lastTimestamp = new Date(series.lastMs);
    const { namespace } = series.subject;
    if (series.name) {
      try {
        await this.requests.send({
          method: "PATCH",
          path: corePath("events", namespace, series.name),
          body: { count, lastTimestamp },
          contentType: MERGE_PATCH_TYPE,
        });
        series.written = count;
        return;
      } catch (error) {
        // Events expire (an hour by default): the series goes on in a new one.
        if (statusOf(error) !== 404) throw error;
      }
    }
    const created = await this.requests.read<CoreV1Event>(
      eventCreation(
        eventBody(this.component, series.subject, series.event, {
          count,
          firstTimestamp: series.firstTimestamp,
          lastTimestamp,
        }),
      ),
    );
    series.name = created.metadata.name;
    series.written = count;
  }
}
