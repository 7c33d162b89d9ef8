// Talking to the server: JSON requests and errors phrased for a person.

/** An error whose message can be shown to a researcher as it is. */
export class FriendlyError extends Error {
  constructor(message, { status = 0, retryable = false } = {}) {
    super(message);
    this.name = "FriendlyError";
    this.status = status;
    this.retryable = retryable;
  }
}

export const NETWORK_MESSAGE =
  "The dashboard server could not be reached. Check your connection; pressing Upload again resumes where it stopped.";

/** The problem+json `detail` of a failed response, or a sentence built from its status. */
export async function problemDetail(response) {
  let detail = "";
  try {
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : body.title || "";
    }
  } catch {
    // an empty or non-JSON body: fall back to the status below
  }
  if (detail) return detail;
  if (response.status >= 500) return `The server had a problem (HTTP ${response.status}); try again in a moment.`;
  return `The server refused the request (HTTP ${response.status}).`;
}

/** fetch() that turns a network failure into a FriendlyError. */
export async function request(url, options = {}) {
  try {
    return await fetch(url, options);
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new FriendlyError(NETWORK_MESSAGE, { retryable: true });
  }
}

/** POST JSON and return the parsed reply; a refusal becomes a FriendlyError with its detail. */
export async function postJson(url, body) {
  const response = await request(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    throw new FriendlyError(await problemDetail(response), { status: response.status });
  }
  return response.status === 204 ? null : response.json();
}

export async function getJson(url) {
  const response = await request(url, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    throw new FriendlyError(await problemDetail(response), { status: response.status });
  }
  return response.json();
}
