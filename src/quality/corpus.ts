/**
 * The fixed text every quality measurement runs through the artifact's own tokenizer,
 * teacher-forced: the quantize acceptance check and `sphana verify`'s agreement check.
 * About 500 tokens with Llama 3's tokenizer (the test pins the exact count), in segments of
 * different kinds so a model that is good only at prose cannot hide broken code or numbers.
 * Each segment is one sequence (BOS first when the tokenizer has one).
 *
 * Changing a single character changes every figure recorded against it: bump
 * CORPUS_VERSION when editing, so reports stay comparable.
 */

export const CORPUS_VERSION = 1;

export interface CorpusSegment {
  name: string;
  text: string;
}

export const CORPUS: readonly CorpusSegment[] = [
  {
    name: 'prose',
    text:
      'The library opens at nine in the morning and closes at six in the evening. On weekdays most visitors come after lunch, ' +
      'when the reading room is quiet and the light from the tall windows falls across the long wooden tables. The librarian ' +
      'keeps a small notebook where she writes down the books that people ask for but cannot find. At the end of each month ' +
      'she reads the list again and orders the titles that appear more than once.',
  },
  {
    name: 'code',
    text:
      'def merge_sorted(a: list[int], b: list[int]) -> list[int]:\n' +
      '    """Merge two sorted lists into one sorted list."""\n' +
      '    result = []\n' +
      '    i, j = 0, 0\n' +
      '    while i < len(a) and j < len(b):\n' +
      '        if a[i] <= b[j]:\n' +
      '            result.append(a[i])\n' +
      '            i += 1\n' +
      '        else:\n' +
      '            result.append(b[j])\n' +
      '            j += 1\n' +
      '    result.extend(a[i:])\n' +
      '    result.extend(b[j:])\n' +
      '    return result\n',
  },
  {
    name: 'numbers',
    text:
      'The first ten prime numbers are 2, 3, 5, 7, 11, 13, 17, 19, 23 and 29. Multiplying 12 by 12 gives 144, and 144 divided ' +
      'by 3 is 48. Water boils at 100 degrees Celsius, which is 212 degrees Fahrenheit. In 2023 the company sold 1,250 units ' +
      'in January and 1,675 in March. The value of pi is approximately 3.14159.',
  },
  {
    name: 'french-german-spanish',
    text:
      "Le matin, le marché du village est plein de couleurs : les fruits, les légumes et les fleurs arrivent des fermes " +
      "voisines. Die Kinder gehen jeden Tag zu Fuß zur Schule, und im Winter ist der Weg oft mit Schnee bedeckt. " +
      'En verano, la familia pasa las tardes en la playa y vuelve a casa cuando el sol se pone detrás de las montañas.',
  },
  {
    name: 'chinese-japanese-russian',
    text:
      '今天天气很好，我们去公园散步吧。图书馆在学校的东边，星期天不开门。' +
      '私は毎朝七時に起きて、コーヒーを飲みながら新聞を読みます。' +
      'Москва — столица России, а Санкт-Петербург находится на берегу Балтийского моря.',
  },
  {
    name: 'dialogue',
    text:
      'User: What is the difference between a list and a tuple in Python?\n' +
      'Assistant: A list is mutable, so you can add, remove or change its items after it is created. A tuple is immutable: ' +
      'once it is created, its items cannot change. Tuples are often used for fixed groups of values, such as the x and y ' +
      'coordinates of a point.',
  },
];
