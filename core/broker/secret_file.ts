/**
 * Reads a secret (a password, a URL with one) or a certificate from a file
 * named by a setting, as Docker and Compose `secrets:` provide them. Every
 * failure names the setting, the file and the fix, and never the content.
 *
 * @module
 */

/** A file named by a setting could not be used; the message says why and what to do. */
export class SecretFileError extends Error {
  /** The setting that named the file, for example `AMQP_PASSWORD_FILE`. */
  readonly setting: string;

  /**
   * @param setting The setting that named the file.
   * @param message What failed and how to fix it.
   * @param options The underlying error, if any.
   */
  constructor(setting: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SecretFileError";
    this.setting = setting;
  }
}

/** Options for {@linkcode readSecretFile}. */
export interface ReadSecretFileOptions {
  /**
   * Remove trailing line breaks, as `echo secret > file` adds one. Keep them
   * for PEM files.
   * @default {true}
   */
  trim?: boolean;
  /** Said after the fix when this process may not read the file, e.g. where the image allows reads. */
  notCapableHint?: string;
}

/** Largest file accepted: secrets and certificates are small. */
const MAX_BYTES = 1024 * 1024;

/**
 * Reads the file at `path`, named by the setting `setting`. Throws a
 * {@linkcode SecretFileError} when it is missing, unreadable, a directory,
 * too large or empty.
 */
export async function readSecretFile(
  path: string,
  setting: string,
  options: ReadSecretFileOptions = {},
): Promise<string> {
  const cannot = `Cannot read ${setting} as`;
  let bytes: Uint8Array;
  try {
    const info = await Deno.stat(path);
    if (info.isDirectory) {
      throw new SecretFileError(setting, `${cannot} '${path}' is a directory: name a file`);
    }
    if (info.size > MAX_BYTES) {
      throw new SecretFileError(
        setting,
        `${cannot} '${path}' has ${info.size} bytes, more than a secret or certificate: name the right file`,
      );
    }
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof SecretFileError) throw error;
    if (error instanceof Deno.errors.NotFound) {
      throw new SecretFileError(
        setting,
        `${cannot} '${path}' does not exist: create it, or set ${setting} to the file that holds it`,
        { cause: error },
      );
    }
    if (error instanceof Deno.errors.NotCapable) {
      const hint = options.notCapableHint ? ` (${options.notCapableHint})` : "";
      throw new SecretFileError(
        setting,
        `${cannot} this process may not read '${path}': allow it with --allow-read=${path}${hint}`,
        { cause: error },
      );
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new SecretFileError(
        setting,
        `${cannot} the file system does not let this user read '${path}': make it readable by the user the process runs as`,
        { cause: error },
      );
    }
    throw new SecretFileError(setting, `${cannot} '${path}' failed to open: ${error}`, {
      cause: error,
    });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (error) {
    throw new SecretFileError(setting, `${cannot} '${path}' is not UTF-8 text: name a text file`, {
      cause: error,
    });
  }
  if (options.trim ?? true) text = text.replace(/[\r\n]+$/, "");
  if (text.trim() === "") {
    throw new SecretFileError(setting, `${cannot} '${path}' is empty: write the value into it`);
  }
  return text;
}
