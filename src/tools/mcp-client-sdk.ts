// The MCP client SDK costs ~110 ms to import. Only downstream MCP servers and the re-entry hop need
// it, so it is loaded on first use instead of at start-up (clients such as Codex do not wait for slow
// servers before their first model request).
import type * as ClientModule from '@modelcontextprotocol/client';
import type * as StdioModule from '@modelcontextprotocol/client/stdio';

export type ClientSdk = typeof ClientModule & Pick<typeof StdioModule, 'StdioClientTransport'>;

let loaded: ClientSdk | undefined;
let loading: Promise<ClientSdk> | undefined;

export function loadClientSdk(): Promise<ClientSdk> {
  if (loaded) return Promise.resolve(loaded);
  loading ??= Promise.all([import('@modelcontextprotocol/client'), import('@modelcontextprotocol/client/stdio')]).then(([c, s]) => {
    loaded = { ...c, StdioClientTransport: s.StdioClientTransport };
    return loaded;
  });
  return loading;
}

/** Whether `err` is the SDK's error with this code (false when the SDK was never loaded). */
export function isSdkError(err: unknown, code: keyof ClientSdk['SdkErrorCode']): boolean {
  return loaded !== undefined && err instanceof loaded.SdkError && err.code === loaded.SdkErrorCode[code];
}
