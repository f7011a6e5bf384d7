// Agent files in other tools' formats, loaded into the same `AgentDefinition` as our YAML:
//
//   claude-md   Claude Code sub-agents: `*.md` with YAML front matter (name, description, tools, model, …)
//               and the Markdown body as the instructions.
//   codex-toml  Codex custom agents: `*.toml` with name, description, developer_instructions, model, ….
//
// Each file is translated into the YAML file shape (snake_case `AgentFile`), validated by the same zod
// schema and normalised by the same `normalise`, so every rule of our own format (names, models,
// permission rules) holds for them too. Errors name the file, line and column of the key in the file,
// using the file's own field names. The translations live in format-claude.ts and format-codex.ts, what
// they share in format-translate.ts.
//
// Also here: loading every directory agents come from (config/agent-sources.ts) into one catalog
// (`loadAgentSources`), which the store uses for start-up and hot reload.
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { AgentFileFormat } from '../config/agents-config.js';
import type { AgentOrigin, AgentSource } from '../config/agent-sources.js';
import type { AgentDefinition, AgentLoadError } from './definition.js';
import { addFirstByName, listAgentFiles, loadAgentFile, type AgentFileResult } from './loader.js';
import { suggest } from '../file-errors/positions.js';
import { parseClaudeAgent } from './format-claude.js';
import { parseCodexAgent } from './format-codex.js';

export type { AgentFileFormat } from '../config/agents-config.js';
export { CLAUDE_MODEL_ALIASES, mapClaudeModel, parseClaudeAgent } from './format-claude.js';
export { mapCodexModel, parseCodexAgent } from './format-codex.js';

/** A loaded catalog, plus what each file yielded (the store keeps a broken file's last good agent). */
export interface SourcesCatalog {
  agents: Map<string, AgentDefinition>;
  errors: AgentLoadError[];
  /** Every agent file seen, in load order: its agent when valid (even if a duplicate), else undefined. */
  files: Map<string, AgentDefinition | undefined>;
  /** Where each served agent comes from (by name). */
  origins: Map<string, AgentOrigin>;
  /** User or shipped agents not served because an agent of a nearer origin has their name. */
  shadowed: { name: string; file: string; by: string }[];
}

/**
 * Loads every source. Never throws. A missing non-optional directory is an error; within a directory
 * files load in sorted name order; a name already taken (by an earlier file or directory) is an error
 * on the later file, which is ignored.
 */
export function loadAgentSources(sources: readonly AgentSource[], opts: LoadOptions = {}): SourcesCatalog {
  const agents = new Map<string, AgentDefinition>();
  const errors: AgentLoadError[] = [];
  const files = new Map<string, AgentDefinition | undefined>();
  const origins = new Map<string, AgentOrigin>();
  const shadowed: SourcesCatalog['shadowed'] = [];
  for (const src of sources) {
    const origin = src.origin ?? 'workspace';
    const listed = listAgentFiles(src);
    if (!('files' in listed)) {
      if (listed.error) errors.push(listed.error);
      continue;
    }
    for (const file of listed.files) {
      const { result, nameLine } = loadAgentFileAs(file, src.format);
      if (result.agent && opts.providers) {
        const bad = checkProvider(result.agent, opts.providers);
        if (bad) {
          result.errors.push(bad);
          delete result.agent;
        }
      }
      errors.push(...result.errors);
      files.set(file, result.agent);
      if (!result.agent) continue;
      const taken = agents.get(result.agent.name);
      // A user's or shipped agent with a name the workspace (or the user) already uses: the nearer one wins.
      if (taken && origins.get(taken.name) !== origin && origin !== 'workspace') {
        shadowed.push({ name: result.agent.name, file, by: taken.source.file });
        continue;
      }
      addFirstByName(agents, errors, result.agent, nameLine !== undefined ? { line: nameLine, column: 1 } : {});
      if (!origins.has(result.agent.name)) origins.set(result.agent.name, origin);
    }
  }
  return { agents, errors, files, origins, shadowed };
}

export interface LoadOptions {
  /** Provider names a `model:` may use (built-in and delegate.providers); unchecked when absent. */
  providers?: readonly string[];
}

/**
 * An agent whose `model:` names no known provider would fail on every run: report it at load time, at
 * the `model` line of its file, with the nearest known provider ("opneai" → "openai").
 */
function checkProvider(agent: AgentDefinition, providers: readonly string[]): AgentLoadError | undefined {
  if (!agent.model) return undefined;
  const slash = agent.model.indexOf('/');
  const provider = slash > 0 ? agent.model.slice(0, slash) : agent.model;
  if (providers.includes(provider)) return undefined;
  const hint = suggest(provider, providers);
  const text = safeRead(agent.source.file) ?? '';
  const lines = text.split('\n');
  const index = lines.findIndex((l) => /^\s*model\s*[:=]/.test(l));
  const column = index >= 0 ? lines[index].indexOf(provider) + 1 || 1 : undefined;
  return {
    file: agent.source.file,
    ...(index >= 0 ? { line: index + 1, column } : {}),
    field: 'model',
    message: `unknown provider "${provider}" in "${agent.model}"${hint ? ` (did you mean "${hint}"?)` : ''}; known: ${providers.join(', ')} (add others under delegate.providers in mcp.json)`,
  };
}

/** Loads one agent file in the given format. `nameLine` is where its name is written, when known. */
export function loadAgentFileAs(file: string, format: AgentFileFormat): { result: AgentFileResult; nameLine?: number } {
  if (format === 'yaml') {
    const result = loadAgentFile(file);
    return { result, nameLine: result.agent ? lineOf(safeRead(file) ?? '', /^name\s*:/m) : undefined };
  }
  const text = safeRead(file);
  if (text === undefined) return { result: { errors: [{ file, field: '', message: 'cannot read file' }] } };
  const parsed = format === 'claude-md' ? parseClaudeAgent(text, file) : parseCodexAgent(text, file);
  return { result: parsed.result, nameLine: parsed.positions.name?.line };
}

function safeRead(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function lineOf(text: string, re: RegExp): number | undefined {
  const m = re.exec(text);
  return m ? text.slice(0, m.index).split('\n').length : undefined;
}

/** True when a directory exists (for watching only what is there). */
export function dirExists(dir: string): boolean {
  try {
    return existsSync(dir) && statSync(dir).isDirectory();
  } catch {
    return false;
  }
}
