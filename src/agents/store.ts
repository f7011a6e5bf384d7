// The live set of agents the server serves. Loading errors are kept next to the agents so that
// list_agents, `agents validate` and stderr can all report them; later stages reload it in place.
import { EventEmitter } from 'node:events';
import { loadAgentsDir } from './loader.js';
import { formatLoadError, type AgentCatalog, type AgentDefinition, type AgentLoadError } from './definition.js';

export class AgentStore extends EventEmitter {
  private catalog: AgentCatalog = { agents: new Map(), errors: [] };

  constructor(readonly dir: string) {
    super();
  }

  load(): AgentCatalog {
    this.catalog = loadAgentsDir(this.dir);
    this.emit('change', this.catalog);
    return this.catalog;
  }

  get(name: string): AgentDefinition | undefined {
    return this.catalog.agents.get(name);
  }

  list(): AgentDefinition[] {
    return [...this.catalog.agents.values()];
  }

  exposed(): AgentDefinition[] {
    return this.list().filter((a) => a.expose);
  }

  get errors(): AgentLoadError[] {
    return this.catalog.errors;
  }

  formattedErrors(): string[] {
    return this.catalog.errors.map(formatLoadError);
  }
}
