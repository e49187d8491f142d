// Announces background batch jobs as they end: `df.llm.map(..., background=True)` and
// `via="batch_api"` runs, with their counts and cost.
//
// The plugin polls the server extension (GET jobs/ended), which reads the log the kernels write.
// A comm from the kernel was the other way, and a worse one: a message sent while no page is
// open (a reload, a closed laptop) is lost, and a kernel that died cannot send one. The log has
// every job's end, so a page that comes back announces what ended meanwhile (its cursor is kept
// in localStorage), and a job ends in the log whatever the kernel is doing.

import { Notification } from '@jupyterlab/apputils';

import type { IEndedJob, LLMApi } from './api';

const CURSOR_KEY = 'llm-notebook:jobs-ended-cursor';
const SEEN_KEY = 'llm-notebook:jobs-announced';
/** Jobs whose end was logged late (a commit after a poll read) are asked for again this long. */
const OVERLAP_S = 30;
const SEEN_LIMIT = 200;
const AUTO_CLOSE_MS = 15000;

function usd(value: number): string {
  return `$${value.toFixed(value >= 1 ? 2 : 4)}`;
}

/** One line about an ended job: what a toast shows. */
export function describeJob(job: IEndedJob): string {
  const parts = [`${job.ok.toLocaleString()} ok`];
  if (job.errors) {
    parts.push(`${job.errors.toLocaleString()} errors`);
  }
  if (job.cached) {
    parts.push(`${job.cached.toLocaleString()} cached`);
  }
  const notRun = job.rows - job.done;
  if (notRun > 0) {
    parts.push(`${notRun.toLocaleString()} not run`);
  }
  parts.push(job.unpriced && !job.cost ? 'price unknown' : usd(job.cost));
  const how = job.via === 'batch_api' ? 'Batch API job' : 'Batch job';
  const where = job.notebook ? ` (${job.notebook})` : '';
  return `${how} ${job.id} ${job.status}: ${parts.join(' · ')} · ${job.model}${where}`;
}

function kindOf(job: IEndedJob): 'success' | 'warning' | 'error' {
  if (job.status === 'failed') {
    return 'error';
  }
  return job.status === 'done' && !job.errors ? 'success' : 'warning';
}

export class JobNotifier {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;

  constructor(
    private readonly api: LLMApi,
    private readonly intervalMs: () => number,
    private readonly storage: Storage = window.localStorage
  ) {}

  start(): void {
    this.stopped = false;
    void this.poll();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private read(key: string): string | null {
    try {
      return this.storage.getItem(key);
    } catch {
      return null;
    }
  }

  private write(key: string, value: string): void {
    try {
      this.storage.setItem(key, value);
    } catch {
      // private browsing: announcements still work for this page
    }
  }

  private seen(): string[] {
    try {
      const parsed: unknown = JSON.parse(this.read(SEEN_KEY) ?? '[]');
      return Array.isArray(parsed) ? parsed.filter((x): x is string => typeof x === 'string') : [];
    } catch {
      return [];
    }
  }

  async poll(): Promise<void> {
    try {
      const stored = Number(this.read(CURSOR_KEY));
      const cursor = Number.isFinite(stored) && stored > 0 ? stored : undefined;
      const reply = await this.api.endedJobs(cursor);
      if (cursor === undefined) {
        // A first look from this browser: jobs that ended just before are announced too.
        this.write(CURSOR_KEY, String(reply.now - OVERLAP_S));
        if (reply.jobs.length === 0) {
          const again = await this.api.endedJobs(reply.now - OVERLAP_S);
          this.announce(again.jobs);
        }
      } else {
        this.announce(reply.jobs);
        this.write(CURSOR_KEY, String(Math.max(cursor, reply.now - OVERLAP_S)));
      }
    } catch {
      // the server extension is off or the log unreadable: the sidebar says so; try again later
    } finally {
      if (!this.stopped) {
        this.timer = setTimeout(() => void this.poll(), this.intervalMs());
      }
    }
  }

  private announce(jobs: IEndedJob[]): void {
    if (!jobs.length) {
      return;
    }
    // Several tabs poll the same log: the first to see a job announces it.
    const seen = this.seen();
    for (const job of jobs) {
      if (seen.includes(job.id)) {
        continue;
      }
      seen.push(job.id);
      Notification.emit(describeJob(job), kindOf(job), { autoClose: AUTO_CLOSE_MS });
    }
    this.write(SEEN_KEY, JSON.stringify(seen.slice(-SEEN_LIMIT)));
  }
}
