// llm-notebook's JupyterLab plugin: the "LLM" sidebar, its commands, settings, markdown
// highlighting of `%%llm` cells, the saved snapshots of widgets whose kernel is gone, and
// notifications when background batch jobs end.

import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';

import { ApiError, type ICall, type ITemplate, LLMApi } from './api';
import { insertCodeCell, promptCellSource, templateCellSource } from './cells';
import { LLMCellHighlighter } from './highlight';
import { JobNotifier } from './jobs';
import { LLMSidebar, SIDEBAR_ID } from './sidebar';
import { SnapshotFallbacks } from './snapshots';

const PLUGIN_ID = 'llm-notebook:plugin';
const CATEGORY = 'LLM';

export namespace CommandIDs {
  export const openSidebar = 'llm-notebook:open-sidebar';
  export const refresh = 'llm-notebook:refresh';
  export const search = 'llm-notebook:search';
  export const filterModel = 'llm-notebook:filter-model';
  export const filterThisNotebook = 'llm-notebook:filter-this-notebook';
  export const clearFilters = 'llm-notebook:clear-filters';
  export const openThread = 'llm-notebook:open-thread';
  export const insertPrompt = 'llm-notebook:insert-prompt';
  export const insertTemplate = 'llm-notebook:insert-template';
  export const toggleHighlight = 'llm-notebook:toggle-highlight';
}

const llmIcon = new LabIcon({
  name: 'llm-notebook:sidebar',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M4 3h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 ' +
    '0 1-2-2V5a2 2 0 0 1 2-2zm3 5v2h2V8H7zm4 0v2h2V8h-2zm4 0v2h2V8h-2z"/></svg>'
});

interface ISettings {
  defaultModel: string;
  highlightLlmCells: boolean;
  refreshSeconds: number;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The LLM sidebar (history, usage, templates) and %%llm cell highlighting.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    const api = new LLMApi();
    const settings: ISettings = { defaultModel: '', highlightLlmCells: true, refreshSeconds: 3 };
    const highlighter = new LLMCellHighlighter(tracker);
    new SnapshotFallbacks(tracker);

    const currentNotebook = () => tracker.currentWidget?.context.path ?? null;

    const insert = (source: string): boolean => {
      const path = insertCodeCell(tracker, source);
      if (path === null) {
        Notification.warning('Open a notebook first: the cell is inserted into the active notebook.', {
          autoClose: 5000
        });
        return false;
      }
      const panel = tracker.currentWidget;
      if (panel) {
        app.shell.activateById(panel.id);
      }
      return true;
    };

    const insertPrompt = async (call: ICall): Promise<void> => {
      // The list holds previews; the cell gets the whole prompt.
      try {
        const full = await api.call(call.id);
        insert(promptCellSource(full.call.prompt ?? '', settings.defaultModel || undefined));
      } catch (error) {
        Notification.error(
          `Could not read call ${call.id}: ${error instanceof ApiError ? error.message : String(error)}`,
          { autoClose: 8000 }
        );
      }
    };

    const insertTemplate = (template: ITemplate): void => {
      insert(templateCellSource(template.name, settings.defaultModel || undefined));
    };

    // Background batch jobs are announced when they end, sidebar open or not.
    new JobNotifier(api, () => settings.refreshSeconds * 1000).start();

    const sidebar = new LLMSidebar({ api, currentNotebook, insertPrompt, insertTemplate });
    sidebar.title.icon = llmIcon;
    app.shell.add(sidebar, 'left', { rank: 650 });
    restorer?.add(sidebar, SIDEBAR_ID);
    tracker.currentChanged.connect(() => sidebar.notebookChanged());

    const { commands } = app;
    const show = () => app.shell.activateById(sidebar.id);

    commands.addCommand(CommandIDs.openSidebar, {
      label: 'Open LLM Sidebar',
      caption: 'Show the LLM history, usage and templates',
      icon: llmIcon,
      execute: show
    });
    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh LLM History',
      execute: () => sidebar.refresh(true)
    });
    commands.addCommand(CommandIDs.search, {
      label: 'Search LLM History',
      execute: args => {
        show();
        sidebar.focusSearch(typeof args.query === 'string' ? args.query : undefined);
      }
    });
    commands.addCommand(CommandIDs.filterModel, {
      label: args => (args.model ? `Show LLM Calls of ${String(args.model)}` : 'Filter LLM History by Model'),
      execute: args => {
        show();
        if (typeof args.model === 'string') {
          sidebar.setModelFilter(args.model || null);
        } else {
          sidebar.node.querySelector<HTMLSelectElement>('.jp-LLMSidebar-model')?.focus();
        }
      }
    });
    commands.addCommand(CommandIDs.filterThisNotebook, {
      label: 'Show LLM Calls of This Notebook',
      isEnabled: () => currentNotebook() !== null,
      execute: () => {
        show();
        sidebar.setNotebookFilter('this');
      }
    });
    commands.addCommand(CommandIDs.clearFilters, {
      label: 'Clear LLM History Search and Filters',
      execute: () => {
        show();
        sidebar.clearFilters();
      }
    });
    const callId = (args: Record<string, unknown>): number | null => {
      if (typeof args.id === 'number') {
        return args.id;
      }
      return sidebar.selectedCall?.id ?? null;
    };
    commands.addCommand(CommandIDs.openThread, {
      label: 'Open Thread of Selected LLM Call',
      isEnabled: args => callId(args) !== null,
      execute: async args => {
        const id = callId(args);
        if (id !== null) {
          show();
          await sidebar.openThread(id);
        }
      }
    });
    commands.addCommand(CommandIDs.insertPrompt, {
      label: 'Copy Selected LLM Prompt into a New %%llm Cell',
      isEnabled: args => callId(args) !== null,
      execute: async args => {
        const id = callId(args);
        if (id !== null) {
          await insertPrompt({ id } as ICall);
        }
      }
    });
    const templateFor = async (args: Record<string, unknown>): Promise<ITemplate | null> => {
      if (typeof args.name === 'string') {
        const found = (await api.templates()).find(t => t.name === args.name);
        if (!found) {
          Notification.warning(`No template named ${args.name}`, { autoClose: 5000 });
        }
        return found ?? null;
      }
      return sidebar.selectedTemplate;
    };
    commands.addCommand(CommandIDs.insertTemplate, {
      label: 'Insert Selected Template as %%llm -t Cell',
      isEnabled: args => typeof args.name === 'string' || sidebar.selectedTemplate !== null,
      execute: async args => {
        const template = await templateFor(args);
        if (template) {
          insertTemplate(template);
        }
      }
    });
    commands.addCommand(CommandIDs.toggleHighlight, {
      label: 'Highlight %%llm Cells as Markdown',
      isToggled: () => settings.highlightLlmCells,
      execute: async () => {
        const value = !settings.highlightLlmCells;
        if (settingRegistry) {
          await settingRegistry.set(PLUGIN_ID, 'highlightLlmCells', value);
        } else {
          settings.highlightLlmCells = value;
          highlighter.enabled = value;
        }
      }
    });
    sidebar.selectionChanged.connect(() => commands.notifyCommandChanged());

    if (palette) {
      for (const command of [
        CommandIDs.openSidebar,
        CommandIDs.refresh,
        CommandIDs.search,
        CommandIDs.filterModel,
        CommandIDs.filterThisNotebook,
        CommandIDs.clearFilters,
        CommandIDs.openThread,
        CommandIDs.insertPrompt,
        CommandIDs.insertTemplate,
        CommandIDs.toggleHighlight
      ]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }

    if (settingRegistry) {
      void settingRegistry
        .load(PLUGIN_ID)
        .then(loaded => {
          const apply = () => {
            settings.defaultModel = (loaded.get('defaultModel').composite as string) ?? '';
            settings.highlightLlmCells = loaded.get('highlightLlmCells').composite !== false;
            const seconds = Number(loaded.get('refreshSeconds').composite ?? 3);
            settings.refreshSeconds = Number.isFinite(seconds) && seconds >= 1 ? seconds : 3;
            highlighter.enabled = settings.highlightLlmCells;
            sidebar.pollMs = settings.refreshSeconds * 1000;
            commands.notifyCommandChanged(CommandIDs.toggleHighlight);
          };
          apply();
          loaded.changed.connect(apply);
          // Show the log the server reads in the settings editor (read-only there).
          sidebar.refreshed.connect((_, status) => {
            if (loaded.get('logPath').composite !== status.log_name) {
              void loaded.set('logPath', status.log_name);
            }
          });
        })
        .catch(reason => {
          console.error('llm-notebook: could not load settings', reason);
        });
    }
  }
};

export default plugin;
