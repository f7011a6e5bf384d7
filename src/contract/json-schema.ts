// A JSON Schema object, as offered to models for tool inputs and as an agent's output_schema.
import { z } from 'zod';

export const JsonSchema = z.record(z.string(), z.unknown());
export type JsonSchema = z.infer<typeof JsonSchema>;
