// A Redis URL as messages and logs may show it: the password masked (redis://user:***@host:6379/0).
export function safeRedisUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, (_m, auth: string) => `//${auth.includes(':') ? `${auth.split(':')[0]}:***` : '***'}@`);
}
