// The live set of agents the server serves. Loading errors are kept next to the agents so that
// list_agents, `agents validate` and stderr can all report them; later stages reload it in place.
import { EventEmitter } from 'node:events';
import type { AgentOrigin, AgentSource } from '../config/agent-sources.js';
import { loadAgentSources, type LoadOptions, type SourcesCatalog } from './formats.js';
import { formatLoadError, type AgentCatalog, type AgentDefinition, type AgentLoadError } from './definition.js';

export class AgentStore extends EventEmitter {
  private catalog: AgentCatalog = { agents: new Map(), errors: [] };
  private origins = new Map<string, AgentOrigin>();
  /** User or shipped agents hidden by a nearer agent of the same name (see agentSources). */
  shadowed: SourcesCatalog['shadowed'] = [];
  /** Per agent file, the agent it last loaded successfully (a file that breaks keeps serving it). */
  private lastGood = new Map<string, AgentDefinition>();
  /** Agents made by create_agent: in memory only, kept across reloads. */
  private dynamic = new Map<string, AgentDefinition>();
  /** Directories (with their format) the agents come from; by default just `dir` as YAML. */
  readonly sources: AgentSource[];

  constructor(
    readonly dir: string,
    sources?: AgentSource[],
    private readonly loadOptions: LoadOptions = {},
  ) {
    super();
    this.sources = sources ?? [{ dir, format: 'yaml' }];
    this.setMaxListeners(0); // one 'change' listener per live session
  }

  load(): AgentCatalog {
    return this.reload();
  }

  /**
   * Re-reads every source and swaps the catalog in one step, then emits 'change'. A file that no longer
   * loads keeps serving its last good agent (its errors are reported all the same); a removed file's
   * agent goes away. See src/agents/watch.ts for what triggers it.
   */
  reload(): AgentCatalog {
    const next = loadAgentSources(this.sources, this.loadOptions);
    const lastGood = new Map<string, AgentDefinition>();
    for (const [file, agent] of next.files) {
      if (agent) {
        lastGood.set(file, agent);
        continue;
      }
      const prev = this.lastGood.get(file);
      if (!prev || next.agents.has(prev.name) || this.dynamic.has(prev.name)) continue;
      next.agents.set(prev.name, prev);
      lastGood.set(file, prev);
      next.errors.push({ file, field: '', message: `still serving the last good version of agent "${prev.name}" until this file is fixed` });
    }
    for (const d of this.dynamic.values()) {
      const file = next.agents.get(d.name);
      if (file) next.errors.push({ file: file.source.file, field: 'name', message: `duplicate agent name "${d.name}": already created by create_agent; this file is ignored` });
      next.agents.set(d.name, d);
    }
    this.lastGood = lastGood;
    this.origins = next.origins;
    this.shadowed = next.shadowed;
    this.catalog = { agents: next.agents, errors: next.errors };
    this.emit('change', this.catalog);
    return this.catalog;
  }

  /** Registers an agent made at run time (create_agent). Throws when the name is taken. */
  addDynamic(agent: AgentDefinition): void {
    const existing = this.catalog.agents.get(agent.name);
    if (existing) throw new Error(`an agent named "${agent.name}" already exists (${existing.source.file})`);
    this.dynamic.set(agent.name, agent);
    this.catalog = { agents: new Map(this.catalog.agents).set(agent.name, agent), errors: this.catalog.errors };
    this.emit('change', this.catalog);
  }

  /** Where an agent comes from: workspace, user, shipped, or created (create_agent). */
  originOf(name: string): AgentOrigin | 'created' {
    return this.dynamic.has(name) ? 'created' : (this.origins.get(name) ?? 'workspace');
  }

  /**
   * When nothing is served: a loud note naming every directory searched (stderr at start-up and
   * list_agents), since a client usually shows neither the server's cwd nor its log.
   */
  emptyNote(): string | undefined {
    if (this.exposed().length > 0) return undefined;
    return `no agents are served: none found in ${this.sources.map((s) => `${s.dir} (${s.format})`).join(', ')}. Put agent files in one of them, pass --workspace <project dir>, or run "delegate-mcp init" in your project.`;
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
