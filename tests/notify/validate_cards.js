// Validates Adaptive Cards with Microsoft's own parser (npm "adaptivecards").
// stdin: a JSON list of cards. stdout: a JSON list with, for each card, every event the parser
// raised while parsing (unknown elements, invalid values, properties newer than the card's
// version) and every failure of its property validation. An empty list per card means valid.
"use strict";
const path = require("path");
const AC = require(path.join(__dirname, "..", "..", "node_modules", "adaptivecards", "dist", "adaptivecards.js"));

function problems(card) {
  const found = [];
  const version = AC.Versions["v" + String(card.version || "").replace(".", "_")];
  if (!version) {
    found.push(`unsupported card version ${JSON.stringify(card.version)}`);
    return found;
  }
  // Parse as a host that supports exactly the card's version, so anything newer is reported.
  const context = new AC.SerializationContext(version);
  const parsed = new AC.AdaptiveCard();
  parsed.parse(card, context);
  for (let i = 0; i < context.eventCount; i++) {
    const event = context.getEventAt(i);
    found.push(`parse: ${event.message}`);
  }
  for (const event of parsed.validateProperties().validationEvents) {
    found.push(`validate: ${event.message}`);
  }
  return found;
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const cards = JSON.parse(input);
  process.stdout.write(JSON.stringify(cards.map(problems)));
});
