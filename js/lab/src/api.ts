// The server extension's REST API (llm_notebook/server/handlers.py), typed.

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IStatus {
  version: string;
  /** The log's file name; the server never says where it is. */
  log_name: string;
  latest_call_id: number;
  calls: number;
  templates: string | null;
}

export interface ICall {
  id: number;
  ts: number;
  model: string;
  prompt: string | null;
  response: string | null;
  system?: string | null;
  status: string;
  error_kind: string | null;
  error: string | null;
  input_tokens: number | null;
  output_tokens: number | null;
  cost: number | null;
  unpriced: number;
  duration_ms: number | null;
  cached: number;
  conversation_id: string | null;
  parent_id: number | null;
  notebook: string | null;
}

export interface IHistoryPage {
  rows: ICall[];
  limit: number;
  offset: number;
  has_more: boolean;
}

export interface IFacets {
  models: string[];
  notebooks: string[];
}

export interface IThread {
  call: ICall;
  thread: ICall[];
}

export interface ITotals {
  calls: number;
  input_tokens: number;
  output_tokens: number;
  cost: number;
  unpriced: number;
  errors: number;
  cached: number;
}

export interface IUsageSummary {
  day_start: number;
  today: ITotals;
  notebook: string | null;
  notebook_today: ITotals | null;
  notebook_total: ITotals | null;
}

export interface ITemplate {
  name: string;
  version: number;
  versions: number;
  prompt: string;
  system: string | null;
  model: string | null;
  tags: string[];
  defaults: Record<string, unknown>;
  variables: string[];
  updated: number;
}

/** A background batch job that ended (the server reads it from the log's `jobs` table). */
export interface IEndedJob {
  id: string;
  finished: number;
  status: string;
  via: string;
  model: string;
  prompt: string | null;
  rows: number;
  done: number;
  ok: number;
  errors: number;
  cached: number;
  cost: number;
  unpriced: number;
  notebook: string | null;
}

export interface IEndedJobs {
  /** The server's clock: ask with `after` near it next time. */
  now: number;
  jobs: IEndedJob[];
}

export interface IHistoryQuery {
  search?: string;
  model?: string;
  notebook?: string;
  limit?: number;
  offset?: number;
  preview?: number;
}

/** An error the server answered with a JSON `{"message": ...}` (or could not be reached). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

export class LLMApi {
  constructor(
    private readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  status(): Promise<IStatus> {
    return this.get('status');
  }

  history(query: IHistoryQuery): Promise<IHistoryPage> {
    return this.get('history', { ...query });
  }

  facets(): Promise<IFacets> {
    return this.get('facets');
  }

  call(id: number): Promise<IThread> {
    return this.get(`calls/${encodeURIComponent(String(id))}`);
  }

  usageSummary(notebook: string | null): Promise<IUsageSummary> {
    const midnight = new Date();
    midnight.setHours(0, 0, 0, 0);
    return this.get('usage/summary', {
      day_start: midnight.getTime() / 1000,
      notebook: notebook ?? undefined
    });
  }

  /** Background jobs that ended after `after` (server time); without it, only the clock. */
  endedJobs(after?: number): Promise<IEndedJobs> {
    return this.get('jobs/ended', { after });
  }

  async templates(): Promise<ITemplate[]> {
    const reply = await this.get<{ templates: ITemplate[] }>('templates');
    return reply.templates;
  }

  private async get<T>(
    path: string,
    query: Record<string, string | number | undefined> = {}
  ): Promise<T> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== '') {
        params.set(key, String(value));
      }
    }
    const qs = params.toString();
    const url =
      URLExt.join(this.settings.baseUrl, 'llm-notebook', 'api', path) + (qs ? `?${qs}` : '');
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, { method: 'GET' }, this.settings);
    } catch (error) {
      throw new ApiError(`the Jupyter server could not be reached (${String(error)})`, 0);
    }
    const body = await response.text();
    let data: unknown = null;
    try {
      data = body ? JSON.parse(body) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message =
        data && typeof (data as { message?: unknown }).message === 'string'
          ? (data as { message: string }).message
          : `HTTP ${response.status}`;
      if (response.status === 404 && !data) {
        throw new ApiError(
          'the llm-notebook server extension is not enabled; check `jupyter server extension list`',
          404
        );
      }
      throw new ApiError(message, response.status);
    }
    return data as T;
  }
}
