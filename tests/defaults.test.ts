// The defaults must be current: the default model and the Claude Code aliases must not be in the
// installed Anthropic SDK's own deprecation table (the SDK warns on every call to such a model).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_MODEL } from '../src/config/defaults.js';
import { CLAUDE_MODEL_ALIASES } from '../src/agents/formats.js';
import { loadConfig } from '../src/config/config.js';
import { tempDir } from './helpers.js';

const require = createRequire(import.meta.url);

async function sdkDeprecatedModels(): Promise<Record<string, string>> {
  const sdkDir = path.dirname(require.resolve('@anthropic-ai/sdk'));
  const mod = await import(pathToFileURL(path.join(sdkDir, 'internal', 'data', 'deprecated-models.mjs')).href);
  return mod.DEPRECATED_MODELS as Record<string, string>;
}

describe('current defaults', () => {
  it("the default model and the sonnet/opus/haiku aliases are not in the SDK's deprecation table", async () => {
    const deprecated = await sdkDeprecatedModels();
    assert.ok(Object.keys(deprecated).length > 0, 'the SDK still ships a deprecation table (if not, find where it moved)');
    const local = (ref: string) => ref.slice(ref.indexOf('/') + 1);
    assert.match(DEFAULT_MODEL, /^anthropic\//);
    assert.equal(deprecated[local(DEFAULT_MODEL)], undefined, `${DEFAULT_MODEL} is deprecated (end of life ${deprecated[local(DEFAULT_MODEL)]})`);
    let checked = 0;
    for (const [alias, ref] of Object.entries(CLAUDE_MODEL_ALIASES)) {
      assert.equal(deprecated[local(ref)], undefined, `alias ${alias} → ${ref} is deprecated`);
      checked++;
    }
    assert.equal(checked, 3);
  });

  it('with no mcp.json anywhere the default model applies (agents create has a model)', () => {
    const ws = tempDir('dmcp-defaults-');
    const cfg = loadConfig({ workspace: ws }, ws, { HOME: ws, XDG_CONFIG_HOME: path.join(ws, 'xdg') });
    assert.equal(cfg.configFile, undefined);
    assert.equal(cfg.defaultModel, DEFAULT_MODEL);
    assert.equal(loadConfig({ workspace: ws }, ws, { HOME: ws, DELEGATE_MCP_MODEL: 'openai/gpt-x' }).defaultModel, 'openai/gpt-x');
  });

  it('the installed @anthropic-ai/sdk is the 1.x line this was checked with', () => {
    const { readFileSync } = require('node:fs') as typeof import('node:fs');
    const sdkDir = path.dirname(require.resolve('@anthropic-ai/sdk'));
    const version = (JSON.parse(readFileSync(path.join(sdkDir, 'package.json'), 'utf8')) as { version: string }).version;
    assert.match(version, /^1\.(1[7-9]|[2-9]\d)\./);
  });
});
