// The page's credentials and HTTP calls. The long-lived token is typed once, kept in this tab's
// sessionStorage and sent only in a header, to trade it for a short-lived browser token; URLs
// (WebSocket, feed, downloads) carry only the short-lived one.

const STORED_TOKEN = "echostream.token";
const RENEW_BEFORE_S = 60;

export class AuthProblem extends Error {}

export class ApiProblem extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Api {
  constructor() {
    this.longToken = sessionStorage.getItem(STORED_TOKEN) ?? "";
    this.minted = null; // {token, expires_at}
    this.config = null;
  }

  async loadConfig() {
    const response = await fetch("/v1/web/config", { cache: "no-store" });
    if (!response.ok) throw new ApiProblem(response.status, "capture did not answer");
    this.config = await response.json();
    return this.config;
  }

  get authRequired() {
    return Boolean(this.config?.auth);
  }

  get signedIn() {
    return !this.authRequired || Boolean(this.minted);
  }

  async signIn(longToken) {
    this.longToken = longToken.trim();
    this.minted = null;
    try {
      await this.token();
    } catch (error) {
      sessionStorage.removeItem(STORED_TOKEN);
      throw error;
    }
    sessionStorage.setItem(STORED_TOKEN, this.longToken);
  }

  signOut() {
    this.longToken = "";
    this.minted = null;
    sessionStorage.removeItem(STORED_TOKEN);
  }

  // A browser token valid for at least a minute more, or "" when capture needs none.
  async token() {
    if (!this.authRequired) return "";
    const now = Date.now() / 1000;
    if (this.minted && this.minted.expires_at - now > RENEW_BEFORE_S) return this.minted.token;
    if (!this.longToken) throw new AuthProblem("Enter the server's token to continue.");
    const response = await fetch("/v1/browser-token", {
      method: "POST",
      headers: { Authorization: `Bearer ${this.longToken}` },
      cache: "no-store",
    });
    if (response.status === 401) {
      this.minted = null;
      throw new AuthProblem("The server refused this token. Check ECHOSTREAM_CAPTURE_TOKEN.");
    }
    if (!response.ok) throw new ApiProblem(response.status, `token request failed (${response.status})`);
    this.minted = await response.json();
    return this.minted.token;
  }

  async withToken(path) {
    const token = await this.token();
    if (!token) return path;
    const url = new URL(path, location.href);
    url.searchParams.set("token", token);
    return url.pathname + url.search;
  }

  async websocketUrl(path) {
    const url = new URL(await this.withToken(path), location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  async request(path, { method = "GET" } = {}) {
    const token = await this.token();
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(path, { method, headers, cache: "no-store" });
    if (response.status === 401) {
      this.minted = null;
      throw new AuthProblem("The server refused this token. Check ECHOSTREAM_CAPTURE_TOKEN.");
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      const detail = typeof body.detail === "string" ? body.detail : response.statusText;
      throw new ApiProblem(response.status, detail);
    }
    return response;
  }

  async json(path, options) {
    return (await this.request(path, options)).json();
  }
}
