/**
 * Throwaway certificates for TLS tests, made with openssl in a directory the
 * test deletes: a CA, a server certificate it signs for the broker's names,
 * a client certificate it signs, and an unrelated CA that signs nothing of
 * ours. Keys are readable by all, since containers read them as other users.
 *
 * @module
 */

import { type CommandResult, DeadlineError, runCommand } from "./_command.ts";

/** Paths of the files {@linkcode makeTestPki} writes. */
export interface TestPki {
  ca: string;
  wrongCa: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  let output: CommandResult;
  try {
    output = await runCommand("openssl", args, { cwd: dir, timeoutMs: 60_000 });
  } catch (error) {
    if (error instanceof DeadlineError) throw error;
    throw new Error(`Cannot make test certificates as openssl does not run (${error}): install it`);
  }
  if (output.code !== 0) {
    throw new Error(`openssl ${args.join(" ")} failed: ${output.stderr}`);
  }
}

async function makeCa(dir: string, name: string, subject: string): Promise<void> {
  // deno-fmt-ignore
  await openssl(dir, [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
    "-keyout", `${name}.key`, "-out", `${name}.pem`, "-subj", subject,
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

async function makeSigned(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
  days = 1,
) {
  await Deno.writeTextFile(`${dir}/${name}.ext`, extensions);
  // deno-fmt-ignore
  await openssl(dir, [
    "req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`,
    "-out", `${name}.csr`, "-subj", subject,
  ]);
  // deno-fmt-ignore
  await openssl(dir, [
    "x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key",
    "-CAcreateserial", "-days", String(days), "-out", `${name}.pem`, "-extfile", `${name}.ext`,
  ]);
}

/** Makes the certificates in `dir` for a broker reachable as `hostNames` (and 127.0.0.1). */
export async function makeTestPki(dir: string, hostNames: string[]): Promise<TestPki> {
  await makeCa(dir, "ca", "/CN=Task system test CA");
  await makeCa(dir, "wrong-ca", "/CN=Unrelated test CA");
  const names = [...hostNames.map((name) => `DNS:${name}`), "IP:127.0.0.1"].join(",");
  await makeSigned(
    dir,
    "server",
    `/CN=${hostNames[0]}`,
    `subjectAltName=${names}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`,
  );
  await makeSigned(
    dir,
    "client",
    "/CN=task-system-client",
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
  );
  for (const key of ["server.key", "client.key"]) await Deno.chmod(`${dir}/${key}`, 0o644);
  return {
    ca: `${dir}/ca.pem`,
    wrongCa: `${dir}/wrong-ca.pem`,
    serverCert: `${dir}/server.pem`,
    serverKey: `${dir}/server.key`,
    clientCert: `${dir}/client.pem`,
    clientKey: `${dir}/client.key`,
  };
}

/** A certificate and its key. */
export interface CertificateFiles {
  cert: string;
  key: string;
}

/**
 * Options for {@linkcode makeServerCertificate}.
 */
export interface ServerCertificateOptions {
  /** The host names it names (`DNS:`), and nothing else. */
  hostNames: string[];
  /** Its validity from now, in days; -1 makes one that expired a day ago. @default {1} */
  days?: number;
}

/**
 * Makes `<name>.pem` and `<name>.key` in `dir`, a server certificate signed
 * by the CA of {@linkcode makeTestPki} made there before.
 */
export async function makeServerCertificate(
  dir: string,
  name: string,
  options: ServerCertificateOptions,
): Promise<CertificateFiles> {
  const names = options.hostNames.map((host) => `DNS:${host}`).join(",");
  await makeSigned(
    dir,
    name,
    `/CN=${options.hostNames[0]}`,
    `subjectAltName=${names}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`,
    options.days ?? 1,
  );
  return { cert: `${dir}/${name}.pem`, key: `${dir}/${name}.key` };
}
