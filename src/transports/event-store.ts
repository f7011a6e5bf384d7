// Resumability for 2025-era Streamable HTTP: the SDK transport stores every SSE event it sends on a
// session's streams here, and replays those after a `Last-Event-ID` when a client whose stream dropped
// comes back (GET /mcp with that header). In memory, per session, bounded: the oldest events go first.
import type { EventId, EventStore, JSONRPCMessage, StreamId } from '@modelcontextprotocol/server';

/** Events kept per session; a result that waited longer than this many events is not replayable. */
const MAX_EVENTS = 4096;

export class SessionEventStore implements EventStore {
  private seq = 0;
  private readonly events = new Map<EventId, { streamId: StreamId; message: JSONRPCMessage }>();

  async storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const id = `${streamId}_${++this.seq}`;
    this.events.set(id, { streamId, message });
    if (this.events.size > MAX_EVENTS) this.events.delete(this.events.keys().next().value!);
    return id;
  }

  async getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    return this.events.get(eventId)?.streamId;
  }

  async replayEventsAfter(lastEventId: EventId, { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> }): Promise<StreamId> {
    const last = this.events.get(lastEventId);
    if (!last) throw new Error(`unknown event id ${lastEventId}`);
    let after = false;
    for (const [id, e] of this.events) {
      if (id === lastEventId) {
        after = true;
        continue;
      }
      // The priming event ({}) carries no message.
      if (after && e.streamId === last.streamId && Object.keys(e.message).length) await send(id, e.message);
    }
    return last.streamId;
  }
}

/** The stream an event id of this store belongs to (its ids are `<streamId>_<n>`). */
export function streamOfEventId(eventId: string): string | undefined {
  const i = eventId.lastIndexOf('_');
  return i > 0 ? eventId.slice(0, i) : undefined;
}
