// The Vercel AI SDK against hookgate: streamText with a tool after reasoning (two steps), then
// generateObject. Usage: node ai_sdk.mjs BASE_URL API_KEY MODEL FILE; prints one JSON line.
import { readFileSync } from "node:fs";
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, apiKey, model, file] = process.argv.slice(2);
const provider = createOpenAI({ baseURL, apiKey });

const readFile = tool({
  description: "Read a text file",
  inputSchema: z.object({ path: z.string() }),
  execute: async ({ path }) => readFileSync(path, "utf8").trim(),
});

const stream = streamText({
  model: provider.chat(model),
  prompt: `read ${file} and tell me what it says`,
  tools: { read_file: readFile },
  stopWhen: stepCountIs(3),
  providerOptions: { openai: { reasoningEffort: "low" } },
});
let text = "";
for await (const delta of stream.textStream) text += delta;
const steps = await stream.steps;

const { object } = await generateObject({
  model: provider.chat(model),
  schema: z.object({ city: z.string(), temperature: z.number() }),
  prompt: "weather in Paris?",
});

console.log(
  JSON.stringify({
    text,
    steps: steps.length,
    calls: steps.flatMap((s) => s.toolCalls.map((c) => c.toolName)),
    reasoning: steps.map((s) => s.reasoningText ?? "").join(""),
    object,
  }),
);
