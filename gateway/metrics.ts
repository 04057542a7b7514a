/**
 * The gateway's `/metrics`, in Prometheus text: requests by route and
 * status, and their total time. No key or payload appears.
 *
 * @module
 */

/** Counters of requests. */
export class GatewayMetrics {
  readonly #requests = new Map<string, number>();
  readonly #seconds = new Map<string, number>();

  observe(route: string, status: number, seconds: number): void {
    const labels = `route="${route}",status="${status}"`;
    this.#requests.set(labels, (this.#requests.get(labels) ?? 0) + 1);
    this.#seconds.set(route, (this.#seconds.get(route) ?? 0) + seconds);
  }

  /** How many requests of `route` ended with `status`. */
  count(route: string, status: number): number {
    return this.#requests.get(`route="${route}",status="${status}"`) ?? 0;
  }

  text(): string {
    const lines = [
      "# HELP gateway_requests_total Requests served, by route and status.",
      "# TYPE gateway_requests_total counter",
      ...[...this.#requests].map(([labels, n]) => `gateway_requests_total{${labels}} ${n}`),
      "# HELP gateway_request_seconds_total Time spent serving requests, by route.",
      "# TYPE gateway_request_seconds_total counter",
      ...[...this.#seconds].map(([route, s]) =>
        `gateway_request_seconds_total{route="${route}"} ${s.toFixed(6)}`
      ),
    ];
    return lines.join("\n") + "\n";
  }
}
