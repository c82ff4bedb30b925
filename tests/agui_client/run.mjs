// Runs agents on a hookgate gateway with the official @ag-ui/client HttpAgent and prints
// what the client made of each run, as JSON. Usage: node run.mjs <base url> <api key>
import { HttpAgent } from "@ag-ui/client";

const [base, key] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${key}` };

async function run(agent, params) {
  const types = [];
  const result = await agent.runAgent(params, {
    onEvent({ event }) {
      types.push(event.type);
    },
  });
  return { types, newMessages: result.newMessages, messages: structuredClone(agent.messages) };
}

// 1. A server-side tool: the gateway runs get_weather and streams the call and its result.
const weather = new HttpAgent({
  url: `${base}/agui/agents/helper/runs`,
  headers,
  threadId: "thread-weather",
  initialMessages: [
    { id: "u1", role: "user", content: 'CALL get_weather {"city": "Paris"}' },
  ],
});
const server = await run(weather, { runId: "node-run-1" });

// 2. A tool the client declares: the run hands the call back, the application answers it,
// and a second run on the same thread continues from the result.
const browser = new HttpAgent({
  url: `${base}/agui/runs`,
  headers,
  threadId: "thread-browser",
  initialMessages: [
    { id: "u2", role: "user", content: 'CALL confirm {"question": "Proceed?"}' },
  ],
});
const confirm = {
  name: "confirm",
  description: "Ask the user to confirm",
  parameters: { type: "object", properties: { question: { type: "string" } } },
};
const params = { runId: "node-run-2", tools: [confirm], forwardedProps: { agent: "helper" } };
const handoff = await run(browser, params);
const call = browser.messages.at(-1).toolCalls[0];
browser.addMessage({ id: "t1", role: "tool", toolCallId: call.id, content: "yes" });
const resumed = await run(browser, { ...params, runId: "node-run-3" });

console.log(JSON.stringify({ server, handoff, resumed }));
