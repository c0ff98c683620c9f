/**
 * Calibration text for activation equalization (SmoothQuant-style scales, see
 * python-bridge/sphana_bridge/equalize.py): the bridge runs the fp32 model on it and measures each
 * quantized MatMul input's per-channel range. It is DISJOINT from the quality gate's corpus
 * (src/quality/corpus.ts; test/quality/calibration.test.ts checks that no 5-word run is shared) so
 * the gate never scores text the quantizer was tuned on. Same kinds of text as the corpus
 * (prose, code, numbers, European and CJK/Cyrillic text, dialogue), written for this purpose.
 * Changing it changes the equalized artifacts' bytes: bump CALIBRATION_VERSION.
 */
import type { CorpusSegment } from './corpus.js';

export const CALIBRATION_VERSION = 1;

export const CALIBRATION: readonly CorpusSegment[] = [
  { name: 'prose', text: "The old bridge over the river was built from grey stone more than two hundred years ago. Every spring the water rises almost to the arches, and the people who live nearby walk down in the evening to watch the current carry branches and leaves toward the sea. A baker on the corner sells warm bread to the fishermen before sunrise, and in the afternoon children gather on the steps to trade stickers and stories." },
  { name: 'code', text: "import os\nimport json\n\nclass Cache:\n    def __init__(self, path):\n        self.path = path\n        self.items = {}\n\n    def load(self):\n        if os.path.exists(self.path):\n            with open(self.path) as f:\n                self.items = json.load(f)\n        return self.items\n\n    def get(self, key, default=None):\n        return self.items.get(key, default)\n\nfor n in range(1, 16):\n    print(n * n, n ** 3)\n" },
  { name: 'numbers', text: "A train leaves the station at 7:45 and travels 320 kilometres in 2 hours and 40 minutes, an average speed of 120 km/h. The invoice lists 3 items at 19.99 each, 2 at 4.50 and a delivery fee of 7.25, for a total of 76.22. Between 1990 and 2020 the town grew from 8,400 to 21,300 inhabitants; the square root of 2 is about 1.41421." },
  { name: 'french-german-spanish', text: "Il pleut depuis ce matin et les rues de la ville sont presque vides. Am Wochenende fahren wir mit dem Zug in die Berge und wandern zu einem kleinen See. Mi abuela prepara una sopa de verduras cada domingo y toda la familia se sienta alrededor de la mesa." },
  { name: 'chinese-japanese-russian', text: "我喜欢在周末读书和喝茶。火车站离这里不远，走路大概十分钟。東京の春は桜がとてもきれいで、多くの人が公園に集まります。Летом мы часто ездим на дачу и собираем ягоды в лесу." },
  { name: 'dialogue', text: "User: How do I reverse a string in JavaScript?\nAssistant: Split it into characters, reverse the array and join it again: str.split('').reverse().join(''). For strings with emoji or combined characters, use Array.from(str) instead of split so that each symbol stays whole.\nUser: Thanks, and how do I check whether a number is even?\nAssistant: Use the remainder operator: n % 2 === 0 is true for even numbers." },
];
