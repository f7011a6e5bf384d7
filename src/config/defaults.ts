// Built-in defaults that apply with no mcp.json at all. The default model must be one the installed
// Anthropic SDK does not mark deprecated (tests/defaults.test.ts reads the SDK's table to check it).

/** The model an agent without `model:` runs on when neither mcp.json nor DELEGATE_MCP_MODEL names one. */
export const DEFAULT_MODEL = 'anthropic/claude-sonnet-5-5';
