// A minimal MCP Apps host for the browser tests, built on the official AppBridge (@modelcontextprotocol/ext-apps).
//
// Query string: ?tool=<name>&args=<JSON>&sandbox=<URL of sandbox.html on a second origin>
//               [&drop=<origin to remove from the resource's CSP, to prove the CSP is enforced>]
// The MCP server is reached at /mcp on this page's own origin. Everything a test asserts on is published in
// `window.hostState`.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import {
  AppBridge,
  PostMessageTransport,
  RESOURCE_MIME_TYPE,
  getToolUiResourceUri,
} from "@modelcontextprotocol/ext-apps/app-bridge";

const HOST_INFO = { name: "fal-queue-test-host", version: "0.1.0" };
const APPS_EXTENSION = "io.modelcontextprotocol/ui";

const state = {
  phase: "starting",
  error: null as string | null,
  wire: [] as string[], // "view->host ui/initialize", "view->host tools/call get_fal_status", ...
  calls: [] as { name: string; at: number }[], // the view's tools/call requests, with performance.now()
  resourceMeta: null as unknown,
  toolResult: null as unknown,
  appInfo: null as unknown,
  openedLinks: [] as string[],
  teardown: null as null | (() => Promise<unknown>),
};
(window as any).hostState = state;

const q = new URLSearchParams(location.search);
const toolName = q.get("tool") ?? "";
const toolArgs = JSON.parse(q.get("args") ?? "{}");
const sandboxUrl = new URL(q.get("sandbox") ?? "", location.href);
const dropped = q.getAll("drop");

function describe(msg: any): string {
  const what = "method" in msg ? msg.method : `response#${msg.id}`;
  return msg.method === "tools/call" ? `${what} ${msg.params?.name}` : what;
}

// Record every JSON-RPC message crossing the postMessage transport.
function tap(transport: PostMessageTransport): void {
  const send = transport.send.bind(transport);
  transport.send = (msg, opts) => {
    state.wire.push("host->view " + describe(msg));
    return send(msg, opts);
  };
  const receive = transport.onmessage;
  transport.onmessage = (msg, extra) => {
    state.wire.push("view->host " + describe(msg));
    if ((msg as any).method === "tools/call") state.calls.push({ name: (msg as any).params?.name, at: performance.now() });
    receive?.(msg, extra);
  };
}

async function main(): Promise<void> {
  // 1. An MCP client that advertises MCP Apps support.
  const client = new Client(HOST_INFO, {
    capabilities: { extensions: { [APPS_EXTENSION]: { mimeTypes: [RESOURCE_MIME_TYPE] } } },
  });
  await client.connect(new StreamableHTTPClientTransport(new URL("/mcp", location.href)));

  // 2. The tool's UI resource; call the tool and read the resource.
  const { tools } = await client.listTools();
  const tool = tools.find((t) => t.name === toolName);
  if (!tool) throw new Error(`no tool ${toolName}`);
  const uri = getToolUiResourceUri(tool);
  if (!uri) throw new Error(`tool ${toolName} has no _meta.ui.resourceUri`);
  const resultPromise = client.callTool({ name: toolName, arguments: toolArgs });
  const { contents } = await client.readResource({ uri });
  const content = contents[0];
  if (content?.mimeType !== RESOURCE_MIME_TYPE || !("text" in content)) {
    throw new Error(`${uri} is not ${RESOURCE_MIME_TYPE} text`);
  }
  state.resourceMeta = content._meta ?? null;
  const ui = (content._meta?.ui ?? {}) as { csp?: any; permissions?: any };
  const csp = { ...(ui.csp ?? {}) };
  if (dropped.length) csp.resourceDomains = (csp.resourceDomains ?? []).filter((d: string) => !dropped.includes(d));

  // 3. The outer sandbox frame (a second origin) and the bridge talking to it.
  const iframe = document.createElement("iframe");
  iframe.setAttribute("sandbox", "allow-scripts allow-same-origin allow-forms");
  document.getElementById("app")!.append(iframe);

  const serverCaps = client.getServerCapabilities();
  const bridge = new AppBridge(
    client, // bridge.connect() forwards the view's tools/call and resources/read to this client
    HOST_INFO,
    { openLinks: {}, serverTools: serverCaps?.tools, serverResources: serverCaps?.resources },
    { hostContext: { theme: "light", displayMode: "inline", platform: "web", locale: "en-US" } },
  );
  bridge.onopenlink = async ({ url }) => {
    state.openedLinks.push(url); // a real host would ask the user, then open it
    return {};
  };
  bridge.addEventListener("sizechange", ({ height }) => {
    if (height) iframe.style.height = `${height}px`;
  });
  bridge.addEventListener("sandboxready", () => {
    state.phase = "sandbox-ready";
    void bridge.sendSandboxResourceReady({ html: content.text, csp, permissions: ui.permissions });
  });
  bridge.addEventListener("initialized", async () => {
    state.phase = "initialized";
    state.appInfo = bridge.getAppVersion() ?? null;
    await bridge.sendToolInput({ arguments: toolArgs });
    try {
      const result = await resultPromise;
      state.toolResult = result;
      await bridge.sendToolResult(result);
      state.phase = "result-sent";
    } catch (err) {
      await bridge.sendToolCancelled({ reason: String(err) });
    }
  });

  const transport = new PostMessageTransport(iframe.contentWindow!, iframe.contentWindow!);
  await bridge.connect(transport);
  tap(transport);

  state.teardown = async () => {
    const answer = await bridge.teardownResource({});
    state.phase = "torn-down";
    return answer;
  };

  // 4. Load the sandbox page; its server turns ?csp= into a Content-Security-Policy header, as a host does.
  sandboxUrl.searchParams.set("csp", JSON.stringify(csp));
  iframe.src = sandboxUrl.href;
}

main().catch((err) => {
  state.phase = "error";
  state.error = String(err?.stack ?? err);
  console.error(err);
});
