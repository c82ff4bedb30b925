// The Vercel AI SDK against hookgate: streamText with a tool after reasoning (two steps), then
// generateObject. Usage: node ai_sdk.mjs BASE_URL API_KEY MODEL FILE [chat|responses]; prints
// one JSON line. "responses" is the provider's default (the Responses API), "chat" its Chat
// Completions model.
import { readFileSync } from "node:fs";
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, apiKey, modelName, file, api = "chat"] = process.argv.slice(2);
const provider = createOpenAI({ baseURL, apiKey });
const model = () => (api === "chat" ? provider.chat(modelName) : provider(modelName));

const readFile = tool({
  description: "Read a text file",
  inputSchema: z.object({ path: z.string() }),
  execute: async ({ path }) => readFileSync(path, "utf8").trim(),
});

const stream = streamText({
  model: model(),
  prompt: `read ${file} and tell me what it says`,
  tools: { read_file: readFile },
  stopWhen: stepCountIs(3),
  providerOptions: { openai: { reasoningEffort: "low" } },
});
let text = "";
for await (const delta of stream.textStream) text += delta;
const steps = await stream.steps;

const { object } = await generateObject({
  model: model(),
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
