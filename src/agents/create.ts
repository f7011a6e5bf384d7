// Dynamic agents: a model drafts an agent definition from a description (create_agent tool, `agents
// create`). The drafting is a run of the built-in agent `create_agent` (no tools) through the
// orchestrator like any other: budget reserved and committed, audited, with progress and cancel
// (see orchestrator/draft-agent.ts). The reply must be JSON; it is validated with the agent schema exactly like a file, and an invalid draft
// gets one more attempt with the validation errors. Whatever the draft asks for, its permissions are
// then clamped to a configured ceiling (default: read-only file access), it is registered in the store
// at once (every session sees it through tools/list_changed), and written to the agents directory only
// when asked AND allowed by config.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { DEFAULT_CREATE_AGENT_CONFIG, type CreateAgentCeiling } from '../config/agents-config.js';
import type { ResolvedConfig } from '../config/config.js';
import { parseRule } from '../permissions/rules.js';
import { parseModelRef } from '../config/model-ref.js';
import type { AgentDefinition } from './definition.js';
import { parseAgentSource } from './loader.js';
import { AGENT_NAME_RE, BUILTIN_TOOL_NAMES, FS_READ_TOOLS, FS_WRITE_TOOLS } from './schema.js';
import type { AgentStore } from './store.js';
import { MCP_TOOL_PREFIX } from '../contract/tool-names.js';
import { errorMessage } from '../describe-cause.js';

export interface CreateAgentRequest {
  description: string;
  name?: string;
  save?: boolean;
  onProgress?: (message: string) => void;
}

export interface CreateAgentOutcome {
  name: string;
  /** The MCP tool that runs it (its name). */
  toolName: string;
  /** The definition as YAML (what is saved when saving is allowed). */
  yaml: string;
  definition: AgentDefinition;
  /** Where it was written, when it was saved. */
  savedTo?: string;
  /** Why `save: true` was not honoured. */
  saveRefused?: string;
  /** What the ceiling removed from the draft ("tools.shell.exec: rm -rf /"). */
  clamped: string[];
  /** Model calls it took (1 or 2). */
  attempts: number;
  model: string;
}

/** A create request that cannot be served; the message is for the caller. */
export class CreateAgentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CreateAgentError';
  }
}

const MAX_ATTEMPTS = 2;

/** The system prompt that tells the drafting model our schema. Kept short: the schema validates the rest. */
export const DRAFT_SYSTEM_PROMPT = `You design agent definitions for delegate-mcp, a server that runs AI agents as MCP tools.
Reply with ONE JSON object and nothing else (no prose, no Markdown). Its fields:
- "name" (required): 1-64 characters from A-Z a-z 0-9 _ - ; short, kebab-case, describing the role (e.g. "changelog-writer").
- "description" (required): what the agent does and when to call it; clients' models read this to decide. 1-3 sentences.
- "instructions" (required in practice): the agent's system prompt: role, method step by step, what a good answer contains, what to avoid.
- "max_turns": integer 1-200 (model calls per run; default 8). "temperature": 0-2. "timeout_s": seconds.
- "success_criteria": list of short strings a good answer satisfies.
- "tools": grants, in this shape: {"fs": {"read": true, "write": false}, "net": {"allow": ["api.example.com"]}, "shell": {"exec": ["npm test"]}, "mcp": ["server-name"]}.
  fs.read gives read_file, list_dir and search_files over the workspace. Grant only what the task needs.
- "permissions": optional Claude-Code-style rules {"allow": [...], "ask": [...], "deny": [...]}, e.g. "Read(src/**)", "Bash(npm test)", "WebFetch(domain:example.com)".
- "input_schema": optional JSON Schema (type "object") of the tool input; default {task: string (required), context?: string}.
Leave out "model" unless the description asks for a specific one, and leave out fields you do not need.
Unknown fields are errors. The server may reduce the permissions you ask for.`;

/** The built-in drafting agent's name: the create_agent tool's own name, which no agent may take. */
export const DRAFTER_AGENT = 'create_agent';

/** Runs one drafting attempt (its task names the request and any earlier problems); resolves with the reply. */
export type DraftFn = (task: string, attempt: number) => Promise<string>;

/** The built-in drafting agent: no tools, one turn, the drafting prompt as its instructions. */
export function drafterDefinition(modelRef: string): AgentDefinition {
  const yamlText = stringify(
    {
      name: DRAFTER_AGENT,
      description: 'Built in: drafts agent definitions for the create_agent tool.',
      instructions: DRAFT_SYSTEM_PROMPT,
      model: modelRef,
      max_turns: 1,
      temperature: 0.2,
      expose: false,
    },
    { lineWidth: 0 },
  );
  const parsed = parseAgentSource(yamlText, `built-in:${DRAFTER_AGENT}`);
  if (!parsed.agent) throw new CreateAgentError(`internal: the drafting agent does not validate: ${parsed.errors.map((e) => e.message).join('; ')}`);
  return { ...parsed.agent, source: { file: `built-in:${DRAFTER_AGENT}`, format: 'dynamic' } };
}

/** Drafts, validates, clamps and registers an agent. Throws CreateAgentError for anything the caller should see. */
export async function createAgent(
  cfg: ResolvedConfig,
  store: AgentStore,
  req: CreateAgentRequest,
  /** Tool names that are not agents (list_agents, delegate, …): an agent may not take them. */
  reserved: readonly string[],
  /** Runs a drafting attempt (orchestrator/draft-agent.ts); gets the model ref this function resolved. */
  drafter: (modelRef: string) => DraftFn,
): Promise<CreateAgentOutcome> {
  const cc = cfg.delegate.createAgent ?? DEFAULT_CREATE_AGENT_CONFIG;
  const description = req.description.trim();
  if (!description) throw new CreateAgentError('description is empty: say what the agent should do');
  const taken = (name: string): string | undefined => {
    if (reserved.includes(name)) return `"${name}" is a built-in tool of this server`;
    const existing = store.get(name);
    return existing ? `an agent named "${name}" already exists (${existing.source.file})` : undefined;
  };
  if (req.name !== undefined) {
    if (!AGENT_NAME_RE.test(req.name)) throw new CreateAgentError(`invalid name ${JSON.stringify(req.name)}: use 1-64 characters from A-Z, a-z, 0-9, "_" and "-"`);
    const t = taken(req.name);
    if (t) throw new CreateAgentError(`name collision: ${t}; choose another name`);
  }

  const modelRef = cc.model ?? cfg.defaultModel;
  if (!modelRef) {
    throw new CreateAgentError('no model to draft with: set delegate.createAgent.model or delegate.defaultModel in mcp.json (or DELEGATE_MCP_MODEL)');
  }
  try {
    parseModelRef(modelRef);
  } catch (err) {
    throw new CreateAgentError(`cannot draft with model "${modelRef}": ${errorMessage(err)}`);
  }
  const draftOnce = drafter(modelRef);

  const user = [
    `Design an agent for this request:\n\n${description}`,
    req.name ? `\nIts name must be "${req.name}".` : '',
    store.list().length ? `\nThese names are taken: ${store.list().map((a) => a.name).join(', ')}.` : '',
    `\nThis server grants created agents at most: ${describeCeiling(cc.ceiling)}.`,
  ].join('');
  // Each attempt is a run of its own: a retry carries the earlier reply and what was wrong with it.
  let task = user;

  let draft: Record<string, unknown> | undefined;
  let attempts = 0;
  let lastProblems: string[] = [];
  while (attempts < MAX_ATTEMPTS && !draft) {
    attempts++;
    req.onProgress?.(`drafting the definition with ${modelRef} (attempt ${attempts}/${MAX_ATTEMPTS})`);
    const text = await draftOnce(task, attempts);
    const parsed = extractJson(text);
    let problems: string[];
    if ('error' in parsed) problems = [parsed.error];
    else {
      const obj = parsed.value;
      if (req.name) obj.name = req.name;
      problems = validateDraft(obj);
      if (problems.length === 0 && typeof obj.name === 'string') {
        const t = taken(obj.name);
        if (t) problems = [`name: ${t}; pick another name`];
      }
      if (problems.length === 0) draft = obj;
    }
    if (!draft) {
      lastProblems = problems;
      task =
        `${user}\n\nAn earlier reply was:\n${text}\n\nThat definition is not valid:\n${problems.map((p) => `- ${p}`).join('\n')}\n` +
        'Reply with the corrected definition as ONE JSON object, nothing else.';
    }
  }
  if (!draft) {
    throw new CreateAgentError(`the model's draft was not a valid agent definition after ${MAX_ATTEMPTS} attempts:\n${lastProblems.map((p) => `- ${p}`).join('\n')}`);
  }

  const { raw, removed } = clampToCeiling(draft, cc.ceiling);
  const name = raw.name as string;
  const yamlText = `# Created by create_agent from: ${oneLine(description, 200)}\n` + stringify(raw, { lineWidth: 0 });

  let savedTo: string | undefined;
  let saveRefused: string | undefined;
  if (req.save && cc.allowSave) {
    const file = path.join(cfg.agentsDir, `${name}.yaml`);
    if (existsSync(file)) throw new CreateAgentError(`cannot save: ${file} already exists`);
    const check = parseAgentSource(yamlText, file);
    if (!check.agent) throw new CreateAgentError(`internal: the clamped definition does not validate: ${check.errors.map((e) => e.message).join('; ')}`);
    mkdirSync(cfg.agentsDir, { recursive: true });
    writeFileSync(file, yamlText, { flag: 'wx' });
    store.reload();
    const loaded = store.get(name);
    if (!loaded || loaded.source.file !== file) {
      throw new CreateAgentError(`saved ${file}, but it did not load: ${store.formattedErrors().filter((e) => e.startsWith(file)).join('; ') || 'unknown reason'}`);
    }
    savedTo = file;
    return { name, toolName: name, yaml: yamlText, definition: loaded, savedTo, clamped: removed, attempts, model: modelRef };
  }
  if (req.save) {
    saveRefused = 'not saved: saving created agents is off (set delegate.createAgent.allowSave: true in mcp.json); the agent is served from memory until the server stops';
  }
  const file = `dynamic:${name}`;
  const parsed = parseAgentSource(yamlText, file);
  if (!parsed.agent) throw new CreateAgentError(`internal: the clamped definition does not validate: ${parsed.errors.map((e) => e.message).join('; ')}`);
  const definition: AgentDefinition = { ...parsed.agent, source: { file, format: 'dynamic' } };
  try {
    store.addDynamic(definition);
  } catch (err) {
    // The name was free when checked above; a reload during the model call may have taken it since.
    throw new CreateAgentError(errorMessage(err));
  }
  return { name, toolName: name, yaml: yamlText, definition, ...(saveRefused && { saveRefused }), clamped: removed, attempts, model: modelRef };
}

/** The JSON object in a reply: bare, or inside a ```json fence, or the outermost {…}. */
export function extractJson(text: string): { value: Record<string, unknown> } | { error: string } {
  const fence = /```(?:json|JSON)?\s*\n?([\s\S]*?)```/.exec(text);
  let body = (fence ? fence[1] : text).trim();
  if (!body.startsWith('{')) {
    const start = body.indexOf('{');
    const end = body.lastIndexOf('}');
    if (start < 0 || end < start) return { error: 'the reply contains no JSON object: reply with one JSON object only' };
    body = body.slice(start, end + 1);
  }
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    return { error: `the reply is not valid JSON: ${errorMessage(err)}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { error: 'the reply must be one JSON object (a mapping of fields)' };
  return { value: value as Record<string, unknown> };
}

/** Schema problems of a draft, as "field: message" lines (empty when valid). Same checks as agent files. */
export function validateDraft(obj: Record<string, unknown>): string[] {
  const r = parseAgentSource(stringify(obj, { lineWidth: 0 }), 'draft');
  return r.errors.map((e) => (e.field ? `${e.field}: ${e.message}` : e.message));
}

function oneLine(s: string, max: number): string {
  const l = s.replace(/\s+/g, ' ').trim();
  return l.length > max ? `${l.slice(0, max - 1)}…` : l;
}

function describeCeiling(c: CreateAgentCeiling): string {
  const parts: string[] = [];
  if (c.fs.read) parts.push('reading workspace files');
  if (c.fs.write === true) parts.push('writing workspace files');
  else if (Array.isArray(c.fs.write) && c.fs.write.length) parts.push(`writing ${c.fs.write.join(', ')}`);
  if (c.shell.exec.length) parts.push(`the commands ${c.shell.exec.map((x) => JSON.stringify(x)).join(', ')}`);
  if (c.net.allow.length) parts.push(c.net.allow.includes('*') ? 'fetching URLs' : `fetching from ${c.net.allow.join(', ')}`);
  if (c.mcp.length) parts.push(`the MCP servers ${c.mcp.join(', ')}`);
  if (c.agents.length) parts.push(`delegating to ${c.agents.join(', ')}`);
  if (c.sandbox.network && c.shell.exec.length) parts.push('network access for its commands');
  return parts.length ? parts.join('; ') : 'no tools at all';
}

/**
 * Removes from a (schema-valid) draft every grant the ceiling does not cover: seed `tools`, allow/ask
 * `permissions` rules and `agents`. Deny rules stay (they only narrow). `expose` is forced on (the
 * point of creating an agent is its tool). Returns the clamped copy and what was removed.
 */
export function clampToCeiling(draft: Record<string, unknown>, ceiling: CreateAgentCeiling): { raw: Record<string, unknown>; removed: string[] } {
  const raw = structuredClone(draft) as Record<string, any>;
  const removed: string[] = [];
  const anyHost = ceiling.net.allow.includes('*');
  const anyAgent = ceiling.agents.includes('*');
  const writeOk = (glob?: string): boolean =>
    ceiling.fs.write === true || (Array.isArray(ceiling.fs.write) && glob !== undefined && ceiling.fs.write.includes(glob));

  const tools = raw.tools as Record<string, any> | undefined;
  if (tools) {
    if (tools.fs) {
      if (tools.fs.read === true && !ceiling.fs.read) {
        delete tools.fs.read;
        removed.push('tools.fs.read');
      }
      const w = tools.fs.write;
      if (w === true && ceiling.fs.write !== true) {
        if (Array.isArray(ceiling.fs.write) && ceiling.fs.write.length) {
          tools.fs.write = [...ceiling.fs.write];
          removed.push(`tools.fs.write: true (narrowed to ${ceiling.fs.write.join(', ')})`);
        } else {
          delete tools.fs.write;
          removed.push('tools.fs.write: true');
        }
      } else if (Array.isArray(w)) {
        const keep = w.filter((g: string) => writeOk(g));
        for (const g of w) if (!keep.includes(g)) removed.push(`tools.fs.write: ${g}`);
        if (keep.length) tools.fs.write = keep;
        else delete tools.fs.write;
      }
      // A draft that wanted to write files needs to read them: clamped to read-only, not to nothing.
      if (w !== undefined && w !== false && tools.fs.write === undefined && ceiling.fs.read && tools.fs.read !== true) tools.fs.read = true;
      if (Object.keys(tools.fs).length === 0) delete tools.fs;
    }
    if (tools.shell?.exec) {
      const keep = (tools.shell.exec as string[]).filter((c) => ceiling.shell.exec.includes(c));
      for (const c of tools.shell.exec) if (!keep.includes(c)) removed.push(`tools.shell.exec: ${c}`);
      if (keep.length) tools.shell.exec = keep;
      else delete tools.shell;
    }
    if (tools.net?.allow) {
      const keep = (tools.net.allow as string[]).filter((h) => anyHost || ceiling.net.allow.includes(h));
      for (const h of tools.net.allow) if (!keep.includes(h)) removed.push(`tools.net.allow: ${h}`);
      if (keep.length) tools.net.allow = keep;
      else delete tools.net;
    }
    if (Array.isArray(tools.mcp)) {
      const builtinOk = (t: string): boolean =>
        (FS_READ_TOOLS as readonly string[]).includes(t)
          ? ceiling.fs.read
          : (FS_WRITE_TOOLS as readonly string[]).includes(t)
            ? ceiling.fs.write !== false
            : t === 'run_command'
              ? ceiling.shell.exec.length > 0
              : ceiling.net.allow.length > 0; // fetch_url
      const keep = (tools.mcp as string[]).filter((m) =>
        (BUILTIN_TOOL_NAMES as readonly string[]).includes(m) ? builtinOk(m) : ceiling.mcp.includes(m),
      );
      for (const m of tools.mcp) if (!keep.includes(m)) removed.push(`tools.mcp: ${m}`);
      if (keep.length) tools.mcp = keep;
      else delete tools.mcp;
    }
    if (Object.keys(tools).length === 0) delete raw.tools;
  }

  const ruleOk = (s: string): boolean => {
    const p = parseRule(s);
    if (!p.ok) return false;
    const spec = /^[A-Za-z]+\((.*)\)$/s.exec(s.trim())?.[1]?.trim();
    switch (p.rule.kind) {
      case 'Read':
        return ceiling.fs.read;
      case 'Edit':
        return spec === undefined ? ceiling.fs.write === true : writeOk(spec);
      case 'Bash':
        return spec !== undefined && ceiling.shell.exec.includes(spec);
      case 'WebFetch': {
        if (anyHost) return true;
        const host = spec?.startsWith('domain:') ? spec.slice('domain:'.length) : undefined;
        return host !== undefined && ceiling.net.allow.includes(host);
      }
      case 'Agent':
        return anyAgent || (spec !== undefined && ceiling.agents.includes(spec));
      case 'mcp': {
        const rest = s.trim().slice(MCP_TOOL_PREFIX.length);
        const server = rest.includes('__') ? rest.slice(0, rest.indexOf('__')) : rest;
        return ceiling.mcp.includes(server);
      }
    }
  };
  const perms = raw.permissions as Record<string, string[] | undefined> | undefined;
  if (perms) {
    for (const k of ['allow', 'ask'] as const) {
      const list = perms[k];
      if (!list) continue;
      const keep = list.filter(ruleOk);
      for (const r of list) if (!keep.includes(r)) removed.push(`permissions.${k}: ${r}`);
      if (keep.length) perms[k] = keep;
      else delete perms[k];
    }
    if (Object.keys(perms).length === 0) delete raw.permissions;
  }
  if (Array.isArray(raw.agents)) {
    const keep = (raw.agents as string[]).filter((a) => anyAgent || ceiling.agents.includes(a));
    for (const a of raw.agents) if (!keep.includes(a)) removed.push(`agents: ${a}`);
    if (keep.length) raw.agents = keep;
    else delete raw.agents;
  }
  // The sandbox's network is a grant too.
  const sandbox = raw.sandbox as { network?: boolean } | undefined;
  if (sandbox?.network === true && !ceiling.sandbox.network) {
    removed.push('sandbox.network: true');
    delete sandbox.network;
    if (Object.keys(sandbox).length === 0) delete raw.sandbox;
  }
  if (raw.expose === false) {
    removed.push('expose: false');
    delete raw.expose;
  }
  return { raw, removed };
}

