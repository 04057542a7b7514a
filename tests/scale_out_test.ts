/**
 * `deno task bench --scale-out`'s measurement, in its short mode, against
 * the RabbitMQ at `AMQP_URL` with real worker containers: a task sent to a
 * function at zero replicas is answered once a container starts, and three
 * replicas of a function outrun one.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { formatScaleOut, measureScaleOut } from "../bench/scale_out.ts";
import { AMQP_URL, NEEDS_DOCKER, NEEDS_RABBITMQ } from "./_infra.ts";
import { holdEngine } from "./_engine_lock.ts";

Deno.test({
  name: "measureScaleOut() times scale from zero and compares 1 and 3 replicas",
  ignore: NEEDS_DOCKER || NEEDS_RABBITMQ,
  async fn() {
    await using _engine = await holdEngine("shared");
    const admin = await connectAmqp(AMQP_URL, { connectionName: "scale-out-test" });
    try {
      const said: string[] = [];
      const figures = await measureScaleOut({
        url: AMQP_URL,
        admin,
        quick: true,
        say: (line) => said.push(line),
      });
      assert.ok(figures, said.join("\n"));
      console.log(formatScaleOut(figures).join("\n"));
      assert.equal(figures.scale_from_zero_ms.samples.length, 1);
      // A container's start alone takes longer than this.
      assert.ok(figures.scale_from_zero_ms.median > 100);
      const { one_per_s, three_per_s, ratio } = figures.replicas;
      assert.ok(one_per_s > 0 && three_per_s > 0);
      // Tasks of 20 ms, one at a time per replica: three share the work.
      assert.ok(ratio > 1.3, `3 replicas ran ${ratio}x as fast as 1`);
      assert.ok(formatScaleOut(figures).some((line) => line.includes(`${three_per_s} tasks/s`)));
    } finally {
      await admin.close();
    }
  },
});
