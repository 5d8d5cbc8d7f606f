// What an MCPB host runs for a bundle, resolved by the reference host code: getMcpConfigForManifest of
// @anthropic-ai/mcpb (platform_overrides, user_config defaults, ${__dirname} / ${HOME} / ${user_config.x}).
// tests/test_bundle.py runs it through npx, which puts the package's bin folder on PATH:
//   npx -y -p @anthropic-ai/mcpb@2.1.2 -c "node mcpb_host_config.mjs <unpacked bundle> '<user config JSON>'"
// and prints {"command", "args", "env"} as JSON.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { delimiter, dirname, join, sep } from "node:path";
import { pathToFileURL } from "node:url";

const bin = process.env.PATH.split(delimiter)
  .map((folder) => join(folder, "mcpb"))
  .find((path) => existsSync(path));
const require = createRequire(join(dirname(dirname(bin)), "resolve-from-node_modules.js"));
const { getMcpConfigForManifest } = await import(pathToFileURL(require.resolve("@anthropic-ai/mcpb")).href);

const [folder, userConfig = "{}"] = process.argv.slice(2);
const home = process.env.HOME ?? homedir();
const config = await getMcpConfigForManifest({
  manifest: JSON.parse(readFileSync(join(folder, "manifest.json"), "utf8")),
  extensionPath: folder,
  systemDirs: {
    HOME: home,
    DESKTOP: join(home, "Desktop"),
    DOCUMENTS: join(home, "Documents"),
    DOWNLOADS: join(home, "Downloads"),
  },
  userConfig: JSON.parse(userConfig),
  pathSeparator: sep,
});
const { command, args, env } = config;
process.stdout.write(JSON.stringify({ command, args, env }) + "\n");
